// WordPiece tokenizer, loaded the way transformers loads a BERT tokenizer: from `tokenizer.json` (the
// tokenizers library's format) when present, else from `vocab.txt` + `tokenizer_config.json`. Both routes
// run through @huggingface/tokenizers (a maintained port of the Rust library); for `vocab.txt` we build the
// same tokenizer.json that `BertTokenizerFast` would convert it to (BertNormalizer, BertPreTokenizer, WordPiece).

import { existsSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { Tokenizer } from '@huggingface/tokenizers';
import { FileFormatError, InputError, MismatchError } from '../src/core/errors.js';
import { readJsonObject } from '../src/core/model-dir.js';
import { AsciiWordPiece, type LibraryView } from './ascii-wordpiece.js';

export interface SpecialTokens {
  pad: string;
  unk: string;
  cls: string;
  sep: string;
  mask: string;
}

export interface TokenizerInfo {
  /** Which file the vocabulary came from. */
  source: string;
  lowercase: boolean;
  stripAccents: boolean;
  /**
   * Where [CLS] … [SEP] come from: tokenizer.json's post-processor ('file'), or BERT's, added by distill to a
   * tokenizer.json without one ('added') or built for vocab.txt as transformers' BertTokenizer does ('vocab').
   */
  postProcessor: 'file' | 'added' | 'vocab';
}

type Json = Record<string, unknown>;

/**
 * What separates a text's chunks (tokenizeToIds): characters every BERT normaliser turns into a space and splits at.
 */
const CHUNK_SEPARATOR = /[ \t\n\r]+/;
/**
 * Chunks remembered at most; the memory is cleared when full. Full, it holds ~10 MB of V8's heap with word-like chunks
 * (1–8 pieces each) and 41 MB at worst (every chunk 64 characters of 64 pieces), measured with --expose-gc.
 */
const CHUNK_CACHE_ENTRIES = 1 << 16;
/**
 * The direct printable-ASCII path starts once the library has tokenized this many chunks (~15–90 ms of its time):
 * about what building the path's trie costs, so a fill-mask sentence never pays for it and a corpus pays at most twice.
 */
const ASCII_PATH_AFTER = 1000;
/** Longer chunks (URLs, runs of symbols) are tokenized each time: they seldom repeat. */
const CHUNK_CACHE_MAX_LENGTH = 64;

/**
 * Whether tokenizing each whitespace-separated chunk of a text on its own gives the ids of the whole text, so that a
 * chunk's ids can be remembered. BERT's pipeline allows it: BertNormalizer (or none) maps each character on its own
 * (control characters dropped, whitespace to a space, CJK padded, lower-casing, whose one context rule, the Greek
 * final sigma, stops at a space, and NFD accent stripping, whose reordering stops at a space) and BertPreTokenizer
 * splits at whitespace before anything else, provided that no added token spans a separator. Other pipelines
 * (Precompiled normalisers, Metaspace pre-tokenizers, ...) tokenize whole texts.
 */
function tokenizesByChunk(tj: Json): boolean {
  const normalizer = tj['normalizer'] as Json | null | undefined;
  const preTokenizer = tj['pre_tokenizer'] as Json | null | undefined;
  const added = Array.isArray(tj['added_tokens']) ? (tj['added_tokens'] as Json[]) : [];
  return (
    (normalizer == null || normalizer['type'] === 'BertNormalizer') &&
    preTokenizer?.['type'] === 'BertPreTokenizer' &&
    added.every((t) => typeof t['content'] === 'string' && !CHUNK_SEPARATOR.test(t['content']))
  );
}

/** The library's lookup maps, as its encode uses them (Tokenizer's constructor fills added_tokens_map the same way). */
function libraryView(tok: Tokenizer): LibraryView {
  const addedIds = new Map<string, number>();
  for (const added of tok.get_added_tokens_decoder().values()) {
    addedIds.set(added.content, added.id);
    if (added.normalized && tok.normalizer) addedIds.set(tok.normalizer(added.content), added.id);
  }
  const model = tok.model;
  return {
    piecesToIds: model.tokens_to_ids,
    addedIds,
    modelUnkId: model.unk_token_id,
    fuseUnk: model.fuse_unk === true,
  };
}

/** tokenizer.json files already said to lack a post-processor (noteOnce). */
const NOTED = new Set<string>();

/** Says once per process (not from worker threads) that a tokenizer.json has no post-processor. */
function noteOnce(path: string): void {
  if (!isMainThread || NOTED.has(path)) return;
  NOTED.add(path);
  process.stderr.write(
    `note: ${path} has no post-processor: distill adds BERT's special tokens ([CLS] … [SEP]) around each sequence ` +
      `(Hugging Face's tokenizers would not; distill export writes the post-processor into its copy)\n`,
  );
}

/** A special token in tokenizer_config.json / special_tokens_map.json is a string or {content: string}. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json)['content'] === 'string') return (v as Json)['content'] as string;
  return undefined;
}

/** Whether a model folder holds its tokenizer (tokenizer.json or vocab.txt). */
export function hasTokenizer(dir: string): boolean {
  return existsSync(join(dir, 'tokenizer.json')) || existsSync(join(dir, 'vocab.txt'));
}

/**
 * Two model folders that must share a vocabulary (a teacher and its student, a model and the teacher it is compared
 * with) do, token for token: see assertSameVocabulary. A folder without a tokenizer is not compared (its config's
 * vocab_size is, where it is read).
 */
export function assertSharedVocabulary(a: { path: string; option: string }, b: { path: string; option: string }): void {
  if (!hasTokenizer(a.path) || !hasTokenizer(b.path)) return;
  WordPieceTokenizer.fromDir(a.path).assertSameVocabulary(WordPieceTokenizer.fromDir(b.path), a.option, b.option);
}

export class WordPieceTokenizer {
  readonly dir: string;
  readonly info: TokenizerInfo;
  readonly special: SpecialTokens;
  readonly vocabSize: number;
  readonly padId: number;
  readonly unkId: number;
  readonly clsId: number;
  readonly sepId: number;
  readonly maskId: number;
  /** Ids that are never masking targets: [PAD] [UNK] [CLS] [SEP] [MASK] and any other special added token. */
  readonly specialIds: ReadonlySet<number>;
  /**
   * sha256 over the vocabulary in id order and the normalisation flags:
   * two tokenizers with the same hash give the same ids.
   */
  readonly vocabHash: string;
  private readonly tok: Tokenizer;
  /** tokenizer.json's content, with BERT's post-processor where the file had none (tokenizerJson). */
  private readonly tj: Json;
  private readonly idToTokenTable: string[];
  /**
   * Whether texts are tokenized chunk by chunk, each chunk's ids remembered (faster,
   * the same ids: the function tokenizesByChunk).
   */
  readonly tokenizesByChunk: boolean;
  /** The ids of chunks seen before, where the pipeline tokenizes by chunk. */
  private readonly chunkIds: Map<string, number[]> | undefined;
  /**
   * A chunk of printable ASCII not seen before,
   * tokenized without the library (corpus/ascii-wordpiece.ts), where the pipeline allows.
   */
  private asciiChunks: AsciiWordPiece | undefined;
  /**
   * Builds asciiChunks (its trie: ~80 ms for bert-base's 29k entries)
   * once the library has tokenized ASCII_PATH_AFTER chunks.
   */
  private buildAsciiChunks: (() => AsciiWordPiece | undefined) | undefined;
  private libraryChunks = 0;

  private constructor(
    dir: string,
    tok: Tokenizer,
    tj: Json,
    config: Json,
    info: TokenizerInfo,
    special: SpecialTokens,
    specialFile: string,
  ) {
    this.dir = dir;
    this.tok = tok;
    const byChunk = tokenizesByChunk(tj);
    this.tokenizesByChunk = byChunk;
    this.chunkIds = byChunk ? new Map() : undefined;
    this.buildAsciiChunks = byChunk ? () => AsciiWordPiece.of(libraryView(tok), tj, config) : undefined;
    this.info = info;
    this.special = special;
    const vocab = tok.get_vocab(true);
    this.vocabSize = Math.max(...vocab.values()) + 1;
    this.idToTokenTable = new Array<string>(this.vocabSize).fill('');
    for (const [t, id] of vocab) this.idToTokenTable[id] = t;
    const idOf = (role: keyof SpecialTokens): number => {
      const id = vocab.get(special[role]);
      if (id === undefined) {
        throw new FileFormatError(
          specialFile,
          `the ${role} token "${special[role]}" is not in the vocabulary`,
          `set "${role}_token" in tokenizer_config.json to a token of ${info.source}`,
        );
      }
      return id;
    };
    this.padId = idOf('pad');
    this.unkId = idOf('unk');
    this.clsId = idOf('cls');
    this.sepId = idOf('sep');
    this.maskId = idOf('mask');
    this.tj = info.postProcessor === 'file' ? tj : { ...tj, post_processor: this.bertPostProcessor() };
    if (info.postProcessor === 'file') this.checkPostProcessor();
    else if (info.postProcessor === 'added') noteOnce(info.source);
    const specials = new Set([this.padId, this.unkId, this.clsId, this.sepId, this.maskId]);
    for (const [id, added] of tok.get_added_tokens_decoder()) if (added.special) specials.add(id);
    this.specialIds = specials;
    const h = createHash('sha256');
    h.update(JSON.stringify({ lowercase: info.lowercase, stripAccents: info.stripAccents }));
    for (const t of this.idToTokenTable) h.update(t + '\n');
    this.vocabHash = h.digest('hex');
  }

  /**
   * Refuse two models whose tokenizers give different ids (another vocabulary of the same size included): the message
   * names both folders and the first id where they differ. `mine` and `theirs` name the options that gave them.
   */
  assertSameVocabulary(other: WordPieceTokenizer, mine: string, theirs: string): void {
    if (other.vocabHash === this.vocabHash) return;
    let what: string;
    if (other.vocabSize !== this.vocabSize) what = `${this.vocabSize} tokens against ${other.vocabSize}`;
    else if (other.info.lowercase !== this.info.lowercase) what = `one lower-cases its text and the other does not`;
    else {
      const id = this.idToTokenTable.findIndex((t, i) => t !== other.idToTokenTable[i]);
      what =
        id >= 0
          ? `token ${id} is ${JSON.stringify(this.idToTokenTable[id])} in one and ` +
            `${JSON.stringify(other.idToTokenTable[id])} in the other`
          : 'their normalisation differs (accents)';
    }
    throw new MismatchError(
      `the vocabularies of ${mine} (${this.dir}) and ${theirs} (${other.dir}) differ: ${what}`,
      'a student is distilled from, evaluated against and probed with the teacher whose tokenizer it shares',
    );
  }

  /** Load from a model folder: tokenizer.json if present, else vocab.txt (+ tokenizer_config.json). */
  static fromDir(dir: string): WordPieceTokenizer {
    const configPath = join(dir, 'tokenizer_config.json');
    const config = existsSync(configPath) ? readJsonObject(configPath) : {};
    const mapPath = join(dir, 'special_tokens_map.json');
    const map = existsSync(mapPath) ? readJsonObject(mapPath) : {};
    const pick = (role: string, dflt: string): string =>
      tokenString(config[`${role}_token`]) ?? tokenString(map[`${role}_token`]) ?? dflt;
    const special: SpecialTokens = {
      pad: pick('pad', '[PAD]'),
      unk: pick('unk', '[UNK]'),
      cls: pick('cls', '[CLS]'),
      sep: pick('sep', '[SEP]'),
      mask: pick('mask', '[MASK]'),
    };
    const specialFile = existsSync(configPath)
      ? configPath
      : join(dir, 'tokenizer_config.json (absent: defaults used)');

    const jsonPath = join(dir, 'tokenizer.json');
    if (existsSync(jsonPath)) {
      const tj = readJsonObject(jsonPath);
      const model = tj['model'] as Json | undefined;
      if (!model || model['type'] !== 'WordPiece' || typeof model['vocab'] !== 'object') {
        throw new FileFormatError(
          jsonPath,
          `field "model.type" is ${JSON.stringify(model?.['type'])}, expected "WordPiece" with a "vocab"`,
          'BERT teachers use a WordPiece tokenizer; export the tokenizer of a BERT model',
        );
      }
      const norm = (tj['normalizer'] ?? {}) as Json;
      const lowercase = norm['lowercase'] === true;
      const stripAccents = norm['strip_accents'] === true || (norm['strip_accents'] == null && lowercase);
      const tok = new Tokenizer(tj, config);
      return new WordPieceTokenizer(
        dir,
        tok,
        tj,
        config,
        { source: jsonPath, lowercase, stripAccents, postProcessor: tj['post_processor'] == null ? 'added' : 'file' },
        special,
        specialFile,
      );
    }

    const vocabPath = join(dir, 'vocab.txt');
    if (!existsSync(vocabPath)) {
      throw new FileFormatError(
        join(dir, 'tokenizer.json'),
        'missing, and so is vocab.txt',
        'a model folder needs tokenizer.json, or vocab.txt + tokenizer_config.json, as save_pretrained writes them',
      );
    }
    const lines = readFileSync(vocabPath, 'utf8').split('\n');
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    // As transformers' load_vocab: one token a line, the line number is its id (a repeated token keeps its last id).
    const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
    lines.forEach((line, i) => {
      vocab[line.replace(/\r$/, '')] = i;
    });
    if (lines.length === 0) throw new FileFormatError(vocabPath, 'empty vocabulary');
    // transformers' BertTokenizer defaults: do_lower_case true, strip_accents null (= follow lowercase).
    const lowercase = config['do_lower_case'] === undefined ? true : config['do_lower_case'] === true;
    const stripAccentsSetting = config['strip_accents'];
    const stripAccents = stripAccentsSetting === true || (stripAccentsSetting == null && lowercase);
    const addedTokens = Object.values(special)
      .filter((t, i, all) => all.indexOf(t) === i && vocab[t] !== undefined)
      .map((t) => ({
        id: vocab[t],
        content: t,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      }));
    const tj = {
      version: '1.0',
      added_tokens: addedTokens,
      normalizer: {
        type: 'BertNormalizer',
        clean_text: true,
        handle_chinese_chars: config['tokenize_chinese_chars'] !== false,
        strip_accents: stripAccentsSetting ?? null,
        lowercase,
      },
      pre_tokenizer: { type: 'BertPreTokenizer' },
      post_processor: null,
      decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
      model: {
        type: 'WordPiece',
        unk_token: special.unk,
        continuing_subword_prefix: '##',
        max_input_chars_per_word: 100,
        vocab,
      },
    };
    const tok = new Tokenizer(tj, config);
    return new WordPieceTokenizer(
      dir,
      tok,
      tj,
      config,
      { source: vocabPath, lowercase, stripAccents, postProcessor: 'vocab' },
      special,
      specialFile,
    );
  }

  /** Word pieces of `text`, without [CLS]/[SEP]. Special tokens written in the text ("[MASK]") are kept whole. */
  tokenizeToIds(text: string): number[] {
    if (!this.chunkIds) return this.wholeTextIds(text);
    // Chunk by chunk, each looked up first: the tokenizers port normalises character by character with a regular
    // expression each (~0.4 M tokens/s), and a corpus repeats its words (4% of SOTU + Moby Dick's 2 M chunks are
    // distinct). A chunk not seen before goes to the direct
    // printable-ASCII path when it can, else to the library. Same ids.
    const ids: number[] = [];
    for (const chunk of text.split(CHUNK_SEPARATOR)) {
      if (chunk === '') continue;
      let pieces = this.chunkIds.get(chunk);
      if (pieces === undefined) {
        pieces = this.asciiChunks?.ids(chunk);
        if (pieces === undefined) {
          pieces = this.wholeTextIds(chunk);
          if (this.buildAsciiChunks && ++this.libraryChunks >= ASCII_PATH_AFTER) this.startAsciiPath();
        }
        if (chunk.length <= CHUNK_CACHE_MAX_LENGTH) {
          if (this.chunkIds.size >= CHUNK_CACHE_ENTRIES) this.chunkIds.clear();
          // A copy as the key: V8 keeps a substring of 13 characters or more as a slice of its text, which the key
          // would keep alive (a whole line, or a whole file read as one string).
          this.chunkIds.set(chunk.length < 13 ? chunk : Buffer.from(chunk, 'utf16le').toString('utf16le'), pieces);
        }
      }
      for (const id of pieces) ids.push(id);
    }
    return ids;
  }

  /**
   * A chunk's ids from the direct printable-ASCII path (corpus/ascii-wordpiece.ts, started now if it has not been), or
   * undefined where it leaves the chunk to the library.
   */
  asciiChunkIds(chunk: string): number[] | undefined {
    this.startAsciiPath();
    return this.asciiChunks?.ids(chunk);
  }

  private startAsciiPath(): void {
    if (!this.buildAsciiChunks) return;
    this.asciiChunks = this.buildAsciiChunks();
    this.buildAsciiChunks = undefined;
  }

  /**
   * The same ids as tokenizeToIds, from one call of the tokenizers
   * library on the whole text (slower; the tests' reference).
   */
  wholeTextIds(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /** `[CLS] pieces [SEP]`, as BERT sees one sequence (tokenizer.json's post-processor gives the same: checked). */
  encode(text: string): number[] {
    return [this.clsId, ...this.tokenizeToIds(text), this.sepId];
  }

  /**
   * tokenizer.json as Hugging Face's tokenizers (transformers.js, Python) should read it: the file's own, with
   * BERT's post-processor written in where it had none; for a vocab.txt folder, the tokenizer.json transformers'
   * BertTokenizerFast would make of it. `postProcessorAdded`: the file had none.
   */
  tokenizerJson(): { json: Json; postProcessorAdded: boolean } {
    return { json: this.tj, postProcessorAdded: this.info.postProcessor === 'added' };
  }

  /** BERT's TemplateProcessing, as BertTokenizerFast writes it: [CLS] $A [SEP], and [CLS] $A [SEP] $B [SEP]. */
  private bertPostProcessor(): Json {
    const cls = this.special.cls;
    const sep = this.special.sep;
    const special = (id: string, typeId: number): Json => ({ SpecialToken: { id, type_id: typeId } });
    const sequence = (id: string, typeId: number): Json => ({ Sequence: { id, type_id: typeId } });
    return {
      type: 'TemplateProcessing',
      single: [special(cls, 0), sequence('A', 0), special(sep, 0)],
      pair: [special(cls, 0), sequence('A', 0), special(sep, 0), sequence('B', 1), special(sep, 1)],
      special_tokens: {
        [cls]: { id: cls, ids: [this.clsId], tokens: [cls] },
        [sep]: { id: sep, ids: [this.sepId], tokens: [sep] },
      },
    };
  }

  /**
   * distill feeds BERT's form (corpus/prepare.ts, the probes, fill-mask): a tokenizer.json whose post-processor
   * gives another is refused, naming what it gives.
   */
  private checkPostProcessor(): void {
    const m = this.special.mask;
    const single = this.tok.encode(m, { add_special_tokens: true }).ids;
    const pair = this.tok.encode(m, { text_pair: m, add_special_tokens: true }).ids;
    const [c, s, k] = [this.clsId, this.sepId, this.maskId];
    const same = (a: number[], b: number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
    if (same(single, [c, k, s]) && same(pair, [c, k, s, k, s])) return;
    const show = (ids: number[]): string => {
      let seen = 0; // the first sequence is A, the second B
      return ids.map((id) => (id === k ? 'AB'[seen++] : (this.idToTokenTable[id] ?? String(id)))).join(' ');
    };
    throw new FileFormatError(
      this.info.source,
      `field "post_processor" gives "${show(single)}" for one sequence and "${show(pair)}" ` +
        `for a pair; distill feeds BERT's "${this.special.cls} A ${this.special.sep}" and ` +
        `"${this.special.cls} A ${this.special.sep} B ${this.special.sep}"`,
      `a BERT teacher's tokenizer.json has BERT's post-processor (or none: distill then adds it); check that ` +
        `"cls_token" and "sep_token" in tokenizer_config.json name the tokens the post-processor uses`,
    );
  }

  /** Text with "[mask]" in any letter case replaced by this tokenizer's mask token, for fill-mask inputs. */
  normalizeMaskMarkers(text: string): string {
    return text.replace(/\[mask\]/gi, this.special.mask);
  }

  idToToken(id: number): string {
    const t = this.idToTokenTable[id];
    if (t === undefined) throw new InputError(`token id ${id} is outside the vocabulary (size ${this.vocabSize})`);
    return t;
  }

  /** The surface form of one token, as a fill-mask pipeline shows it ("##ing" → "ing"). */
  decodeToken(id: number): string {
    return this.tok.decode([id], { skip_special_tokens: false, clean_up_tokenization_spaces: false }).trim();
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }
}

/**
 * What Hugging Face's tokenizers library gives for `text` (and `pair`) with special tokens, from a tokenizer.json's
 * content: how transformers.js and Python read the file distill exports (the tests compare it with encode).
 */
export function libraryEncode(tokenizerJson: Json, text: string, pair?: string): number[] {
  const tok = new Tokenizer(tokenizerJson, {});
  return tok.encode(text, { ...(pair !== undefined ? { text_pair: pair } : {}), add_special_tokens: true }).ids;
}
