// Which student layer is matched with which teacher layer by the intermediate-layer losses (alpha_hidden,
// alpha_attention, alpha_value_relation), and what the teacher must give for them. Computed once per run from
// the config and both shapes; the teacher's tensors of one batch are then keyed by the names below:
//   hidden.N      teacher hidden state N (0 = embeddings, N = output of layer N−1)   [B·T, Ht]
//   attention.L   the self-attention probabilities of teacher layer L (0-based)        [B, At, T, T]
//   query.L, key.L, value.L   its query/key/value projections (bias added)          [B·T, Ht]

import { InputError } from '../src/core/errors.js';

/** The config keys of the intermediate-layer matching. */
export interface IntermediateMatch {
  /** For each student layer, its teacher layer (0-based); null: uniformLayerMap. */
  layer_map: number[] | null;
  /** Heads of the relations (value relations; attention when the head counts differ); null: the teacher's heads. */
  relation_heads: number | null;
}

export interface IntermediateWeights {
  alpha_hidden: number;
  alpha_attention: number;
  alpha_value_relation: number;
}

export interface ModelShape {
  layers: number;
  hidden: number;
  heads: number;
}

export type ProjectionKind = 'query' | 'key' | 'value';

export interface IntermediatePlan {
  weights: IntermediateWeights;
  /** Teacher layer (0-based) of each student layer. */
  layerMap: number[];
  /** alpha_hidden's pairs [student hidden index, teacher hidden index] (0 = the embeddings; i = layer i−1's output). */
  hiddenPairs: [number, number][];
  /** The attention KL per head (equal head counts) or over relation heads. */
  attentionPerHead: boolean;
  relationHeads: number;
  /** What the teacher outputs for these losses. */
  teacher: {
    hiddenStates: number[];
    attentionLayers: number[];
    projections: { layer: number; kind: ProjectionKind }[];
  };
  /** The keys of the teacher's tensors the losses read (see the top of this file). */
  keys: string[];
}

/**
 * Student layer i ↔ teacher layer ⌈(i+1)·Lt/Ls⌉ − 1:
 * the last with the last, evenly spaced below (12 → 6: 1, 3, 5, 7, 9, 11).
 */
export function uniformLayerMap(studentLayers: number, teacherLayers: number): number[] {
  return Array.from({ length: studentLayers }, (_, i) => Math.ceil(((i + 1) * teacherLayers) / studentLayers) - 1);
}

/** The plan of a run, or undefined when all three intermediate losses are off. `source` names the config in errors. */
export function intermediatePlan(
  student: ModelShape,
  teacher: ModelShape,
  w: IntermediateWeights & IntermediateMatch,
  source = 'config',
): IntermediatePlan | undefined {
  if (!(w.alpha_hidden > 0 || w.alpha_attention > 0 || w.alpha_value_relation > 0)) return undefined;
  let layerMap: number[];
  if (w.layer_map === null) {
    if (student.layers > teacher.layers) {
      throw new InputError(
        `${source}: the student has ${student.layers} layers, the teacher ${teacher.layers}: no uniform layer_map`,
        'give "layer_map": a teacher layer for each student layer',
      );
    }
    layerMap = uniformLayerMap(student.layers, teacher.layers);
  } else {
    layerMap = w.layer_map;
    if (layerMap.length !== student.layers)
      throw new InputError(
        `${source}: "layer_map" has ${layerMap.length} entries, the student has ${student.layers} layers`,
        'one teacher layer (0-based) per student layer',
      );
    const bad = layerMap.find((l) => !Number.isInteger(l) || l < 0 || l >= teacher.layers);
    if (bad !== undefined)
      throw new InputError(
        `${source}: "layer_map" names teacher layer ${bad}; the teacher has layers 0..${teacher.layers - 1}`,
      );
  }
  const attentionPerHead = student.heads === teacher.heads;
  const relationHeads = w.relation_heads ?? teacher.heads;
  const needsRelations = w.alpha_value_relation > 0 || (w.alpha_attention > 0 && !attentionPerHead);
  if (needsRelations) {
    for (const [who, h] of [
      ['student', student.hidden],
      ['teacher', teacher.hidden],
    ] as const) {
      if (h % relationHeads !== 0) {
        throw new InputError(
          `${source}: relation_heads ` +
            (`${w.relation_heads === null ? `(null: the teacher's ${teacher.heads} heads) ` : ''}does not divide the ` +
              `${who}'s hidden size ${h}`),
          `set "relation_heads" to a common divisor of ${student.hidden} and ${teacher.hidden}`,
        );
      }
    }
  }
  const hiddenPairs: [number, number][] =
    w.alpha_hidden > 0 ? [[0, 0], ...layerMap.map((t, i): [number, number] => [i + 1, t + 1])] : [];
  const attentionLayers = w.alpha_attention > 0 && attentionPerHead ? [...new Set(layerMap)] : [];
  const projections: { layer: number; kind: ProjectionKind }[] = [];
  if (w.alpha_attention > 0 && !attentionPerHead)
    for (const l of new Set(layerMap)) projections.push({ layer: l, kind: 'query' }, { layer: l, kind: 'key' });
  if (w.alpha_value_relation > 0) projections.push({ layer: layerMap.at(-1)!, kind: 'value' });
  const hiddenStates = [...new Set(hiddenPairs.map(([, t]) => t))].sort((a, b) => a - b);
  const keys = [
    ...hiddenStates.map((h) => `hidden.${h}`),
    ...attentionLayers.map((l) => `attention.${l}`),
    ...projections.map((p) => `${p.kind}.${p.layer}`),
  ];
  return {
    weights: {
      alpha_hidden: w.alpha_hidden,
      alpha_attention: w.alpha_attention,
      alpha_value_relation: w.alpha_value_relation,
    },
    layerMap,
    hiddenPairs,
    attentionPerHead,
    relationHeads,
    teacher: { hiddenStates, attentionLayers, projections },
    keys,
  };
}

/**
 * What a teacher is started with for a run: the hidden states the losses read with the last one last (the cosine
 * loss's), and the attention tensors of the plan (none without one).
 */
export function teacherOutputs(plan: IntermediatePlan | undefined, teacherLayers: number): IntermediatePlan['teacher'] {
  return {
    hiddenStates: [...(plan?.teacher.hiddenStates ?? []).filter((h) => h !== teacherLayers), teacherLayers],
    attentionLayers: plan?.teacher.attentionLayers ?? [],
    projections: plan?.teacher.projections ?? [],
  };
}
