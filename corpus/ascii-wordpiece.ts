// The ids of one printable-ASCII chunk (no space, no control character), computed directly: what BERT's pipeline
// in @huggingface/tokenizers gives for such a chunk, ~20× faster. WordPieceTokenizer.tokenizeToIds asks it first for a
// chunk it has not seen, and gives any other chunk to the library (see corpus/tokenizer.ts).
//
// Why the same ids, step by step, for a chunk of characters 0x21–0x7E that holds no added token:
// - BertNormalizer: clean_text keeps every printable ASCII character; CJK padding touches none; lower-casing (when
//   configured) maps A–Z to a–z; NFD and the removal of marks leave ASCII as it is. No normaliser does nothing.
// - BertPreTokenizer (`[^\s P]+|[P]`, P = \p{P} and the ASCII ranges 21–2F, 3A–40, 5B–60, 7B–7E): every printable
//   ASCII character that is not a letter or a digit is in those ranges, so the words are the runs of letters and
//   digits and every other character stands alone.
// - WordPiece: the longest vocabulary entry from the left, then `##`-prefixed entries; a word with no split, or longer
//   than max_input_chars_per_word, is the unknown token. The library tries candidates from the longest down; a walk
//   down a trie of the entries finds the same first match.
// - ids: the library maps a piece to its added token's id first, else to the vocabulary; a chunk in which an added
//   token's text (or its normalised text) appears, or whose pieces include one, is left to the library (so an added
//   token's id never needs choosing here).

type Json = Record<string, unknown>;

/** What the library's tokenizer holds that decides a chunk's ids (read from it by corpus/tokenizer.ts). */
export interface LibraryView {
  /**
   * The WordPiece model's map, in which each candidate piece is looked up: the vocabulary and the added tokens' texts.
   */
  piecesToIds: ReadonlyMap<string, number>;
  /**
   * Added tokens' ids by their text, and by their normalised text where they are matched after normalising; a piece
   * found here takes this id.
   */
  addedIds: ReadonlyMap<string, number>;
  /** The id of a piece found nowhere (the model's unk_token_id). */
  modelUnkId: number | undefined;
  /** Whether the model fuses consecutive unknown pieces (then this path is not used). */
  fuseUnk: boolean;
}

/**
 * Vocabulary entries of printable ASCII as a trie over character codes: the longest entry at a position in one walk.
 */
class AsciiTrie {
  /** Child of node n by character c (< 128): key n * 128 + c. */
  private readonly children = new Map<number, number>();
  /** Per node: the entry's id, or -1 where no entry ends. */
  private readonly ids: number[] = [-1];
  /** Per node: whether the entry (prefix included) is an added token's text. */
  private readonly added: boolean[] = [false];

  insert(text: string, id: number, added: boolean): void {
    let node = 0;
    for (let i = 0; i < text.length; i++) {
      const key = node * 128 + text.charCodeAt(i);
      let child = this.children.get(key);
      if (child === undefined) {
        child = this.ids.length;
        this.ids.push(-1);
        this.added.push(false);
        this.children.set(key, child);
      }
      node = child;
    }
    this.ids[node] = id;
    this.added[node] = added;
  }

  /** The longest entry that `word` has at `start`: its end and node, or end -1 when none. */
  longest(word: string, start: number): { end: number; node: number } {
    let node = 0;
    let best = { end: -1, node: 0 };
    for (let i = start; i < word.length; i++) {
      const child = this.children.get(node * 128 + word.charCodeAt(i));
      if (child === undefined) break;
      node = child;
      if (this.ids[node]! >= 0) best = { end: i + 1, node };
    }
    return best;
  }

  idOf(node: number): number {
    return this.ids[node]!;
  }
  isAdded(node: number): boolean {
    return this.added[node]!;
  }
}

const isPrintableAscii = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
};

export class AsciiWordPiece {
  /** Entries that start a word, and `##` entries (without the prefix) that continue one. */
  private readonly first = new AsciiTrie();
  private readonly next = new AsciiTrie();
  /** Added tokens' texts, as written and as normalised: a chunk holding one goes to the library. */
  private readonly addedTexts: string[];

  private constructor(
    view: LibraryView,
    private readonly lowercase: boolean,
    prefix: string,
    private readonly maxWordChars: number,
    private readonly unkId: number,
  ) {
    this.addedTexts = [...view.addedIds.keys()];
    for (const [entry, id] of view.piecesToIds) {
      const added = view.addedIds.has(entry);
      if (isPrintableAscii(entry)) this.first.insert(entry, id, added);
      const rest = entry.slice(prefix.length);
      if (entry.startsWith(prefix) && rest !== '' && isPrintableAscii(rest)) this.next.insert(rest, id, added);
    }
  }

  /**
   * For a tokenizer built from `tj` (tokenizer.json's object) and `config` (tokenizer_config.json's), when its pipeline
   * is the one described above; undefined otherwise (other models or normalisers, fused unknowns, XLM's lower-casing).
   */
  static of(view: LibraryView, tj: Json, config: Json): AsciiWordPiece | undefined {
    const normalizer = tj['normalizer'] as Json | null | undefined;
    const model = tj['model'] as Json | undefined;
    const preTokenizer = tj['pre_tokenizer'] as Json | null | undefined;
    if (
      !(normalizer == null || normalizer['type'] === 'BertNormalizer') ||
      preTokenizer?.['type'] !== 'BertPreTokenizer'
    )
      return undefined;
    if (model?.['type'] !== 'WordPiece' || view.fuseUnk || config['do_lowercase_and_remove_accent']) return undefined;
    const prefix = model['continuing_subword_prefix'];
    const maxWordChars = model['max_input_chars_per_word'] ?? 100;
    const unkText = model['unk_token'];
    if (typeof prefix !== 'string' || typeof maxWordChars !== 'number' || typeof unkText !== 'string') return undefined;
    // The library writes the unknown token's text as the piece, then maps it like any piece.
    const unkId = view.addedIds.get(unkText) ?? view.piecesToIds.get(unkText) ?? view.modelUnkId;
    if (unkId === undefined) return undefined;
    return new AsciiWordPiece(view, normalizer?.['lowercase'] === true, prefix, maxWordChars, unkId);
  }

  /** The chunk's ids, or undefined when it is not printable ASCII or touches an added token (the library's case). */
  ids(chunk: string): number[] | undefined {
    if (!isPrintableAscii(chunk)) return undefined;
    const text = this.lowercase ? chunk.toLowerCase() : chunk;
    for (const added of this.addedTexts) if (chunk.includes(added) || text.includes(added)) return undefined;
    const ids: number[] = [];
    let wordStart = -1;
    for (let i = 0; i <= text.length; i++) {
      const c = i < text.length ? text.charCodeAt(i) : 0;
      const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
      if (alnum) {
        if (wordStart < 0) wordStart = i;
        continue;
      }
      if (wordStart >= 0) {
        if (!this.word(text.slice(wordStart, i), ids)) return undefined;
        wordStart = -1;
      }
      if (i < text.length && !this.word(text[i]!, ids)) return undefined;
    }
    return ids;
  }

  /** WordPiece on one word, its ids appended; false when a piece is an added token's text (the library's case). */
  private word(word: string, ids: number[]): boolean {
    if (word.length > this.maxWordChars) {
      ids.push(this.unkId);
      return true;
    }
    const first = ids.length;
    for (let start = 0; start < word.length;) {
      const trie = start === 0 ? this.first : this.next;
      const { end, node } = trie.longest(word, start);
      if (end < 0) {
        ids.length = first;
        ids.push(this.unkId);
        return true;
      }
      if (trie.isAdded(node)) return false;
      ids.push(trie.idOf(node));
      start = end;
    }
    return true;
  }
}
