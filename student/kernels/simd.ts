// Element-wise passes in WebAssembly SIMD (f32x4), on the `wasm` backend's own memory.
//
// The hot element-wise work of a step (the logit losses over [N, V], GELU over [B·T, 4H], LayerNorm) costs 10–35 ns an
// element in JS, and tfjs's wasm Exp/Erf kernels are scalar too. This module is written here in WebAssembly
// text, compiled at start with wabt (an npm package: no toolchain needed), and imports the tfjs wasm
// backend's WebAssembly.Memory, so it reads and writes tensors where they lie: no copies. Pointers are byte
// offsets into that memory; counts are elements. Each pass runs 4 lanes at a time, then a one-lane tail.
//
// exp: Cephes' expf (range reduction by ln 2 in two parts, degree-6 polynomial, exponent built in the
// bits), inputs clamped to [-87, 88]. erf: Eigen/XLA's rational approximation, clamped to [-4, 4]. Both are
// within a few float32 ulps (test/simd.test.ts checks them against Math.exp and reference erf values).

import * as tf from '@tensorflow/tfjs';
import { wasmBackend, type WasmBackend } from './backend-internals.js';
import { ADAMW_KERNEL, type AdamWCoefficients } from '../ops/adamw.js';
import type { OurKernel } from './registry.js';

const splat = (v: number): string => {
  const s = Number.isFinite(v) ? v.toString() : v > 0 ? 'inf' : '-inf';
  return `(v128.const f32x4 ${s} ${s} ${s} ${s})`;
};
const add = (a: string, b: string): string => `(f32x4.add ${a} ${b})`;
const sub = (a: string, b: string): string => `(f32x4.sub ${a} ${b})`;
const mul = (a: string, b: string): string => `(f32x4.mul ${a} ${b})`;
const get = (name: string): string => `(local.get $${name})`;
const set = (name: string, v: string): string => `(local.set $${name} ${v})`;

type Mode = 'vector' | 'tail';
interface Access {
  /** Load 4 floats (vector) or one float splat to 4 lanes (tail) at pointer param `p` + i. */
  ld(p: string): string;
  /** Store 4 lanes (vector) or lane 0 (tail). */
  st(p: string, v: string): string;
  /** Keep lane 0 only in the tail, so that sums count each element once. */
  one(v: string): string;
}

function access(mode: Mode): Access {
  const at = (p: string): string => `(i32.add (local.get $${p}) (local.get $i))`;
  return mode === 'vector'
    ? { ld: (p) => `(v128.load ${at(p)})`, st: (p, v) => `(v128.store ${at(p)} ${v})`, one: (v) => v }
    : {
        ld: (p) => `(f32x4.splat (f32.load ${at(p)}))`,
        st: (p, v) => `(f32.store ${at(p)} (f32x4.extract_lane 0 ${v}))`,
        one: (v) => `(v128.and ${v} (v128.const i32x4 -1 0 0 0))`,
      };
}

/** The body over all n elements: 4 at a time, then the rest one at a time. $i is a byte offset. */
function passes(body: (a: Access) => string): string {
  return `
    (local.set $i (i32.const 0))
    (local.set $e (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $bv (loop $lv
      (br_if $bv (i32.ge_u (local.get $i) (local.get $e)))
      ${body(access('vector'))}
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $lv)))
    (local.set $e (i32.shl (local.get $n) (i32.const 2)))
    (block $bt (loop $lt
      (br_if $bt (i32.ge_u (local.get $i) (local.get $e)))
      ${body(access('tail'))}
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $lt)))`;
}

const lanesSum = (v: string): string =>
  `(f32.add (f32.add (f32x4.extract_lane 0 ${v}) (f32x4.extract_lane 1 ${v})) ` +
  `(f32.add (f32x4.extract_lane 2 ${v}) (f32x4.extract_lane 3 ${v})))`;

function horner(x: string, coefficients: readonly number[]): string {
  let p = splat(coefficients[0]!);
  for (const c of coefficients.slice(1)) p = add(mul(p, x), splat(c));
  return p;
}

const ERF_ALPHA = [
  -2.72614225801306e-10, 2.77068142495902e-8, -2.10102402082508e-6, -5.69250639462346e-5, -7.34990630326855e-4,
  -2.95459980854025e-3, -1.60960333262415e-2,
];
const ERF_BETA = [
  -1.45660718464996e-5, -2.13374055278905e-4, -1.68282697438203e-3, -7.37332916720468e-3, -1.42647390514189e-2,
];
const EXP_POLY = [1.98756915e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];

// exp and erf are written into each loop that uses them (a block yielding a v128), not called: V8 (Node 20) does
// not inline calls between wasm functions, and with one call per 4 lanes these passes took 1.4–1.9× as long (the
// same operations in the same order: the results are the same bits).
/** dx = r·(dy·γ − mean(g) − x̂·mean(g·x̂)), x̂ = (x − m)·r, four lanes (lnDx below). */
const lnDxLanes = (a: Access): string => {
  const xhat = mul(sub(a.ld('x'), get('mv')), get('rv'));
  return a.st('dx', mul(get('rv'), sub(sub(mul(a.ld('dy'), a.ld('g')), get('mgv')), mul(xhat, get('mgxv')))));
};

const EXP_LOCALS = '(local $ex v128) (local $ek v128) (local $er v128) (local $ep v128)';
const ERF_LOCALS = '(local $ec v128) (local $ex2 v128)';

// Two choices in exp and erf that cost nothing in the results and ~40% of the passes' time (V8 on x64: the logit-loss
// kernel on [4096, 6144] 130 → 86 ms alone and 135 → 106 ms inside the tiny step,
// GELU and its gradient 61 → 36 ms a step):
// - the clamps use pmin/pmax (one minps/maxps) instead of min/max, which wasm defines to propagate NaN and to order
//   −0 < +0 and V8 therefore compiles to ~7 instructions each. For a non-NaN x the two agree (the bounds are not
//   zero); for NaN, x must stay the first operand: pmax(x, lo) = x < lo ? lo : x and pmin(x, hi) = hi < x ? hi : x
//   return x, so NaN stays NaN (with the operands swapped NaN would become a bound: test/simd.test.ts checks it).
// - 2^k is built by adding 2²³ + 127 to k (an integer in [−126, 127] after the clamp and the rounding) as a float,
//   whose bits are then 0x4B000000 + k + 127, and shifting left by 23, which drops 0x4B000000's bits: the same
//   exponent field as (trunc_sat(k) + 127) << 23, whose saturating conversion V8 compiles to ~8 instructions.
// Checked on every one of the 2³² float32 inputs against the min/max and trunc_sat form: exp, GELU and GELU's
// gradient gave the same bits (NaN inputs: NaN either way).

/** exp(x) of a v128 expression (Cephes' expf), in the caller's EXP_LOCALS. */
function exp(x: string): string {
  return `(block (result v128)
    ${set('ex', `(f32x4.pmin (f32x4.pmax ${x} ${splat(-87)}) ${splat(88)})`)}
    ${set('ek', `(f32x4.nearest ${mul(get('ex'), splat(Math.LOG2E))})`)}
    ${set('er', sub(sub(get('ex'), mul(get('ek'), splat(0.693359375))), mul(get('ek'), splat(-2.1219444e-4))))}
    ${set('ep', horner(get('er'), EXP_POLY))}
    ${set('ep', add(add(mul(mul(get('ep'), get('er')), get('er')), get('er')), splat(1)))}
    (f32x4.mul ${get('ep')} (i32x4.shl ${add(get('ek'), splat(8388608 + 127))} (i32.const 23))))`;
}

/** erf(x) of a v128 expression (Eigen/XLA's rational form), in the caller's ERF_LOCALS. */
function erf(x: string): string {
  return `(block (result v128)
    ${set('ec', `(f32x4.pmin (f32x4.pmax ${x} ${splat(-4)}) ${splat(4)})`)}
    ${set('ex2', mul(get('ec'), get('ec')))}
    (f32x4.div ${mul(get('ec'), horner(get('ex2'), ERF_ALPHA))} ${horner(get('ex2'), ERF_BETA)}))`;
}

const WAT = `(module
  (import "env" "memory" (memory 1))
  (global $second (mut f32) (f32.const 0))
  (func (export "second") (result f32) (global.get $second))

  ;; out = x + b; returns max over out
  (func (export "addMax") (param $x i32) (param $b i32) (param $out i32) (param $n i32) (result f32)
    (local $i i32) (local $e i32) (local $m v128) (local $v v128)
    ${set('m', splat(-Infinity))}
    ${passes(
      (a) =>
        `${set('v', add(a.ld('x'), a.ld('b')))} ${a.st('out', get('v'))} ${set(
          'm',
          `(f32x4.max
      ${get('m')} ${get('v')})`,
        )}`,
    )}
    (f32.max (f32.max (f32x4.extract_lane 0 ${get('m')}) (f32x4.extract_lane 1 ${get('m')}))
             (f32.max (f32x4.extract_lane 2 ${get('m')}) (f32x4.extract_lane 3 ${get('m')}))))

  ;; out = exp((x - shift) * scale); returns Σ out
  (func (export "expSum") (param $x i32) (param $out i32) (param $n i32) (param $shift f32) (param $scale f32)
    (result f32)
    (local $i i32) (local $e i32) (local $sh v128) (local $sc v128) (local $acc v128) (local $v v128) ${EXP_LOCALS}
    ${set('sh', `(f32x4.splat ${get('shift')})`)} ${set('sc', `(f32x4.splat ${get('scale')})`)}
    ${passes(
      (a) => `${set('v', exp(mul(sub(a.ld('x'), get('sh')), get('sc'))))} ${a.st('out', get('v'))}
      ${set('acc', add(get('acc'), a.one(get('v'))))}`,
    )}
    ${lanesSum(get('acc'))})

  ;; out = exp(a), a = (x - shift) * scale; returns Σ out, and Σ p·a in second()
  (func (export "expSumDot") (param $x i32) (param $out i32) (param $p i32) (param $n i32) (param $shift f32) (param
    $scale f32) (result f32)
    (local $i i32) (local $e i32) (local $sh v128) (local $sc v128) (local $acc v128) (local $dot v128) (local
      $a v128) (local $v v128) ${EXP_LOCALS}
    ${set('sh', `(f32x4.splat ${get('shift')})`)} ${set('sc', `(f32x4.splat ${get('scale')})`)}
    ${passes(
      (a) => `${set('a', mul(sub(a.ld('x'), get('sh')), get('sc')))} ${set('v', exp(get('a')))} ${a.st('out', get('v'))}
      ${set('acc', add(get('acc'), a.one(get('v'))))} ${set('dot', add(get('dot'), a.one(mul(a.ld('p'), get('a')))))}`,
    )}
    (global.set $second ${lanesSum(get('dot'))})
    ${lanesSum(get('acc'))})

  ;; g = qs·g − cs·p; bias += g
  (func (export "klGrad") (param $g i32) (param $p i32) (param $bias i32) (param $n i32) (param $qs f32) (param $cs f32)
    (local $i i32) (local $e i32) (local $q v128) (local $c v128) (local $v v128)
    ${set('q', `(f32x4.splat ${get('qs')})`)} ${set('c', `(f32x4.splat ${get('cs')})`)}
    ${passes(
      (a) => `${set('v', sub(mul(get('q'), a.ld('g')), mul(get('c'), a.ld('p'))))} ${a.st('g', get('v'))}
      ${a.st('bias', add(a.ld('bias'), get('v')))}`,
    )})

  ;; g = s·g; bias += g
  (func (export "scaleAcc") (param $g i32) (param $bias i32) (param $n i32) (param $s f32)
    (local $i i32) (local $e i32) (local $sv v128) (local $v v128)
    ${set('sv', `(f32x4.splat ${get('s')})`)}
    ${passes(
      (a) => `${set('v', mul(get('sv'), a.ld('g')))} ${a.st('g', get('v'))}
      ${a.st('bias', add(a.ld('bias'), get('v')))}`,
    )})

  ;; t = s·x; g += t; bias += t
  (func (export "axpy2") (param $g i32) (param $x i32) (param $bias i32) (param $n i32) (param $s f32)
    (local $i i32) (local $e i32) (local $sv v128) (local $v v128)
    ${set('sv', `(f32x4.splat ${get('s')})`)}
    ${passes(
      (a) => `${set('v', mul(get('sv'), a.ld('x')))} ${a.st('g', add(a.ld('g'), get('v')))}
      ${a.st('bias', add(a.ld('bias'), get('v')))}`,
    )})

  ;; d = x − t; g += s·d; bias += s·d; returns Σ d²
  (func (export "mseGrad") (param $g i32) (param $x i32) (param $t i32) (param $bias i32) (param $n i32) (param
    $s f32) (result f32)
    (local $i i32) (local $e i32) (local $sv v128) (local $d v128) (local $v v128) (local $acc v128)
    ${set('sv', `(f32x4.splat ${get('s')})`)}
    ${passes(
      (a) => `${set('d', sub(a.ld('x'), a.ld('t')))} ${set('acc', add(get('acc'), a.one(mul(get('d'), get('d')))))}
      ${set('v', mul(get('sv'), get('d')))} ${a.st('g', add(a.ld('g'), get('v')))}
        ${a.st('bias', add(a.ld('bias'), get('v')))}`,
    )}
    ${lanesSum(get('acc'))})

  ;; out = x·Φ(x), Φ(x) = ½(1 + erf(x/√2))
  (func (export "gelu") (param $x i32) (param $out i32) (param $n i32) (local $i i32) (local $e i32) (local $v v128)
    ${ERF_LOCALS}
    ${passes(
      (a) => `${set('v', a.ld('x'))}
      ${a.st('out', mul(mul(get('v'), splat(0.5)), add(splat(1), erf(mul(get('v'), splat(Math.SQRT1_2))))))}`,
    )})

  ;; out = dy·(Φ(x) + x·φ(x)), φ(x) = e^(−x²/2)/√(2π)
  (func (export "geluGrad") (param $x i32) (param $dy i32) (param $out i32) (param $n i32) (local $i i32) (local
    $e i32) (local $v v128)
    ${ERF_LOCALS} ${EXP_LOCALS}
    ${passes(
      (a) => `${set('v', a.ld('x'))}
      ${a.st(
        'out',
        mul(
          a.ld('dy'),
          add(
            mul(splat(0.5), add(splat(1), erf(mul(get('v'), splat(Math.SQRT1_2))))),
            mul(mul(get('v'), splat(1 / Math.sqrt(2 * Math.PI))), exp(mul(mul(get('v'), get('v')), splat(-0.5)))),
          ),
        ),
      )}`,
    )})

  ;; Dropout (student/kernels/dropout.ts): element j kept ⇔ fmix32(j·0x9E3779B1 ⊕ key) >> 8 < threshold (unsigned);
  ;; out = x · (kept ? scale : 0). $i is a byte offset: the lanes' element indices are $i/4 + 0..3.
  (func (export "dropout") (param $x i32) (param $out i32) (param $n i32) (param $key i32) (param $threshold i32)
    (param $scale f32)
    (local $i i32) (local $e i32) (local $h v128) (local $kv v128) (local $tv v128) (local $sv v128)
    ${set('kv', '(i32x4.splat (local.get $key))')} ${set('tv', '(i32x4.splat (local.get $threshold))')}
      ${set('sv', '(f32x4.splat (local.get $scale))')}
    ${passes(
      (a) => `${set(
        'h',
        `(v128.xor (i32x4.mul (i32x4.add (i32x4.splat (i32.shr_u (local.get $i) (i32.const 2)))
          (v128.const i32x4 0 1 2 3))
        (i32x4.splat (i32.const 0x9e3779b1))) ${get('kv')})`,
      )}
      ${set('h', `(v128.xor ${get('h')} (i32x4.shr_u ${get('h')} (i32.const 16)))`)}
      ${set('h', `(i32x4.mul ${get('h')} (i32x4.splat (i32.const 0x85ebca6b)))`)}
      ${set('h', `(v128.xor ${get('h')} (i32x4.shr_u ${get('h')} (i32.const 13)))`)}
      ${set('h', `(i32x4.mul ${get('h')} (i32x4.splat (i32.const 0xc2b2ae35)))`)}
      ${set('h', `(v128.xor ${get('h')} (i32x4.shr_u ${get('h')} (i32.const 16)))`)}
      ${a.st(
        'out',
        mul(
          a.ld('x'),
          `(v128.and (i32x4.lt_u (i32x4.shr_u ${get('h')} (i32.const 8)) ${get('tv')})
        ${get('sv')})`,
        ),
      )}`,
    )})

  ;; LayerNorm, one row of n at a time (student/kernels/layer-norm.ts). Σ x:
  (func (export "sum") (param $x i32) (param $n i32) (result f32) (local $i i32) (local $e i32) (local $acc v128)
    ${passes((a) => set('acc', add(get('acc'), a.one(a.ld('x')))))}
    ${lanesSum(get('acc'))})

  ;; Σ (x − m)²
  (func (export "sumSqDev") (param $x i32) (param $n i32) (param $m f32) (result f32)
    (local $i i32) (local $e i32) (local $mv v128) (local $d v128) (local $acc v128)
    ${set('mv', `(f32x4.splat ${get('m')})`)}
    ${passes(
      (a) => `${set('d', sub(a.ld('x'), get('mv')))}
      ${set('acc', add(get('acc'), a.one(mul(get('d'), get('d')))))}`,
    )}
    ${lanesSum(get('acc'))})

  ;; y = ((x − m)·r)·γ + β
  (func (export "lnApply") (param $x i32) (param $g i32) (param $b i32) (param $y i32) (param $n i32) (param $m f32)
    (param $r f32)
    (local $i i32) (local $e i32) (local $mv v128) (local $rv v128)
    ${set('mv', `(f32x4.splat ${get('m')})`)} ${set('rv', `(f32x4.splat ${get('r')})`)}
    ${passes((a) => a.st('y', add(mul(mul(sub(a.ld('x'), get('mv')), get('rv')), a.ld('g')), a.ld('b'))))})

  ;; with x̂ = (x − m)·r and g = dy·γ: dγ += dy·x̂ and dβ += dy (in place); returns Σ g, and Σ g·x̂ in second()
  (func (export "lnGradRow") (param $x i32) (param $dy i32) (param $g i32) (param $dg i32) (param $db i32) (param
    $n i32) (param $m f32) (param $r f32) (result f32)
    (local $i i32) (local $e i32) (local $mv v128) (local $rv v128) (local $xh v128) (local $d v128) (local $gd v128)
      (local $sg v128) (local $sgx v128)
    ${set('mv', `(f32x4.splat ${get('m')})`)} ${set('rv', `(f32x4.splat ${get('r')})`)}
    ${passes(
      (a) => `${set('xh', mul(sub(a.ld('x'), get('mv')), get('rv')))} ${set('d', a.ld('dy'))}
        ${set('gd', mul(get('d'), a.ld('g')))}
      ${set('sg', add(get('sg'), a.one(get('gd'))))} ${set('sgx', add(get('sgx'), a.one(mul(get('gd'), get('xh')))))}
      ${a.st('dg', add(a.ld('dg'), mul(get('d'), get('xh'))))} ${a.st('db', add(a.ld('db'), get('d')))}`,
    )}
    (global.set $second ${lanesSum(get('sgx'))})
    ${lanesSum(get('sg'))})

  ;; dx = r·(dy·γ − mg − x̂·mgx), x̂ = (x − m)·r
  (func (export "lnDx") (param $x i32) (param $dy i32) (param $g i32) (param $dx i32) (param $n i32) (param $m f32)
    (param $r f32) (param $mg f32) (param $mgx f32)
    (local $i i32) (local $e i32) (local $mv v128) (local $rv v128) (local $mgv v128) (local $mgxv v128)
    ${set('mv', `(f32x4.splat ${get('m')})`)} ${set('rv', `(f32x4.splat ${get('r')})`)}
    ${set('mgv', `(f32x4.splat ${get('mg')})`)} ${set('mgxv', `(f32x4.splat ${get('mgx')})`)}
    ${passes(lnDxLanes)})

  ;; AdamW in place (src/train/adamw.ts; the same operations in the same order as its tfjs-op form), g = grad·gs
  ;; (gs: the clipping coefficient times 1/loss_scale; a multiplication by 1 changes nothing):
  ;; m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²; p = p·decay − (m / (√v / bc2 + eps))·stepSize
  (func (export "adamw") (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
    (param $b1 f32) (param $omb1 f32) (param $b2 f32) (param $omb2 f32) (param $bc2 f32) (param $eps f32) (param
      $step f32) (param $decay f32) (param $gs f32)
    (local $i i32) (local $e i32) (local $gv v128) (local $mv v128) (local $vv v128)
    ${passes(
      (a) => `${set('gv', mul(a.ld('g'), `(f32x4.splat ${get('gs')})`))}
      ${set('mv', add(mul(a.ld('m'), `(f32x4.splat ${get('b1')})`), mul(get('gv'), `(f32x4.splat ${get('omb1')})`)))}
        ${a.st('m', get('mv'))}
      ${set(
        'vv',
        add(
          mul(a.ld('v'), `(f32x4.splat ${get('b2')})`),
          mul(
            mul(get('gv'), get('gv')),
            `(f32x4.splat
        ${get('omb2')})`,
          ),
        ),
      )} ${a.st('v', get('vv'))}
      ${a.st(
        'p',
        sub(
          mul(a.ld('p'), `(f32x4.splat ${get('decay')})`),
          mul(
            `(f32x4.div ${get('mv')} ${add(
              `(f32x4.div (f32x4.sqrt ${get('vv')}) (f32x4.splat
              ${get('bc2')}))`,
              `(f32x4.splat ${get('eps')})`,
            )})`,
            `(f32x4.splat ${get('step')})`,
          ),
        ),
      )}`,
    )})
)`;

export interface SimdKernels {
  addMax(x: number, b: number, out: number, n: number): number;
  expSum(x: number, out: number, n: number, shift: number, scale: number): number;
  expSumDot(x: number, out: number, p: number, n: number, shift: number, scale: number): number;
  /** The second result of the last call that has one (expSumDot: Σ p·a). */
  second(): number;
  klGrad(g: number, p: number, bias: number, n: number, qs: number, cs: number): void;
  scaleAcc(g: number, bias: number, n: number, s: number): void;
  axpy2(g: number, x: number, bias: number, n: number, s: number): void;
  mseGrad(g: number, x: number, t: number, bias: number, n: number, s: number): number;
  gelu(x: number, out: number, n: number): void;
  dropout(x: number, out: number, n: number, key: number, threshold: number, scale: number): void;
  adamw(
    p: number,
    g: number,
    m: number,
    v: number,
    n: number,
    b1: number,
    omb1: number,
    b2: number,
    omb2: number,
    bc2: number,
    eps: number,
    stepSize: number,
    decay: number,
    gradScale: number,
  ): void;
  geluGrad(x: number, dy: number, out: number, n: number): void;
  sum(x: number, n: number): number;
  sumSqDev(x: number, n: number, m: number): number;
  lnApply(x: number, g: number, b: number, y: number, n: number, m: number, r: number): void;
  lnGradRow(x: number, dy: number, g: number, dg: number, db: number, n: number, m: number, r: number): number;
  lnDx(x: number, dy: number, g: number, dx: number, n: number, m: number, r: number, mg: number, mgx: number): void;
}

/** Compile the module against `memory`; null when this runtime has no wasm SIMD or wabt is missing. */
export async function compileSimd(memory: WebAssembly.Memory): Promise<SimdKernels | null> {
  try {
    const wabt = await (await import('wabt')).default();
    const parsed = wabt.parseWat('distill-simd.wat', WAT, { simd: true });
    const { buffer } = parsed.toBinary({});
    parsed.destroy();
    const { instance } = await WebAssembly.instantiate(buffer, { env: { memory } });
    return instance.exports as unknown as SimdKernels;
  } catch {
    return null;
  }
}

let kernels: SimdKernels | null | undefined;

/** Compile the module on the wasm backend's memory (once). Null when it cannot be (the JS paths then run). */
export async function loadWasmSimd(): Promise<SimdKernels | null> {
  if (kernels !== undefined) return kernels;
  if (process.env['DISTILL_SIMD'] === 'off') return (kernels = null);
  const backend = tf.findBackend('wasm') as unknown as WasmBackend | null;
  const memory = backend?.wasm?.asm?.memory;
  kernels = memory instanceof WebAssembly.Memory ? await compileSimd(memory) : null;
  return kernels;
}

/** The SIMD kernels, when loaded and the active backend is `wasm`. */
export function wasmSimd(): SimdKernels | null {
  return kernels && tf.getBackend() === 'wasm' ? kernels : null;
}

/** Byte offset of a wasm-backend tensor in the shared memory. */
export function heapOffset(t: tf.TensorInfo): number {
  return wasmBackend(tf.backend()).dataIdMap.get(t.dataId).memoryOffset;
}

/** Whether nothing else holds this tensor's memory (so it may be updated in place). */
export function ownsMemory(t: tf.TensorInfo): boolean {
  return wasmBackend(tf.backend()).refCount(t.dataId) === 1;
}

// THE IN-PLACE INVARIANT. tfjs treats a tensor's memory as immutable for as long as its id lives, and the
// wasm backend's C++ side relies on it: its products (BatchMatMul and _FusedMatMul without a BLAS, Conv2D)
// build an XNNPACK operator with the right operand's values packed into it, cache the operator under that
// operand's tensor id, and drop it only when the id is disposed. Whoever writes new values into a tensor's
// memory in place (AdamW's SIMD pass, src/train/adamw.ts) must therefore tell the backend, or every later product
// multiplies by the values the cache saw first (training on stale weights: issue #12). `rewroteInPlace`
// does that: it disposes the tensor's id on the C++ side (which runs every cache's disposal callback) and
// registers the same id at the same memory again. The memory, the JS-side bookkeeping and the refcount are
// untouched. The rule, in one line: no kernel's cache may outlive an in-place write, so every in-place write
// ends with rewroteInPlace (test/stale-weights.test.ts fails without it).

/** Drop whatever the wasm backend cached under this tensor's id, after its memory was rewritten in place. */
export function rewroteInPlace(t: tf.TensorInfo): void {
  const backend = wasmBackend(tf.backend());
  const data = backend.dataIdMap.get(t.dataId);
  if (!data) return;
  const size = t.shape.reduce((a, b) => a * b, 1);
  backend.wasm.tfjs.disposeData(data.id);
  backend.wasm.tfjs.registerTensor(data.id, size, data.memoryOffset);
}

// AdamW's update of one parameter, the kernel DistillAdamW on `wasm` when the SIMD module loaded (the op:
// student/ops/adamw.ts, which runs the tfjs-op form elsewhere). Inputs {param, grad, m, v}, the
// coefficients and gradScale (the gradient's factor) as attributes; outputs [param', m', v']. One SIMD pass over the
// four where they lie: in place when p, m and v hold their memory alone (the optimizer's variables do), returning the
// same tensor ids (the caller's assign() then keeps them); otherwise on fresh copies, so that the kernel never changes
// a tensor that something else still reads. An in-place pass ends by dropping what kernels cached on the rewritten
// tensors (rewroteInPlace above).

interface WasmOutputs {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
  incRef(dataId: object): void;
}

function adamwKernel(simd: SimdKernels) {
  return ({
    inputs,
    attrs,
    backend,
  }: {
    inputs: tf.NamedTensorInfoMap;
    attrs: tf.NamedAttrMap;
    backend: tf.KernelBackend;
  }): tf.TensorInfo[] => {
    const wasm = backend as unknown as WasmOutputs;
    const { param, grad, m, v } = inputs as Record<'param' | 'grad' | 'm' | 'v', tf.TensorInfo>;
    const c = attrs as unknown as AdamWCoefficients & { gradScale?: number };
    const inPlace = ownsMemory(param) && ownsMemory(m) && ownsMemory(v);
    let outs: tf.TensorInfo[];
    if (inPlace) {
      outs = [param, m, v].map((t) => {
        wasm.incRef(t.dataId);
        return { dataId: t.dataId, shape: t.shape, dtype: t.dtype };
      });
    } else {
      outs = [param, m, v].map((t) => wasm.makeOutput(t.shape, 'float32'));
      // Views after every allocation (allocating may grow the memory and detach earlier views).
      outs.forEach((o, i) => wasm.typedArrayFromHeap(o).set(wasm.typedArrayFromHeap([param, m, v][i]!)));
    }
    const size = param.shape.reduce((x, y) => x * y, 1);
    simd.adamw(
      heapOffset(outs[0]!),
      heapOffset(grad),
      heapOffset(outs[1]!),
      heapOffset(outs[2]!),
      size,
      c.b1,
      1 - c.b1,
      c.b2,
      1 - c.b2,
      c.biasCorrection2Sqrt,
      c.eps,
      c.stepSize,
      c.decayFactor,
      c.gradScale ?? 1,
    );
    // The memory of p, m and v changed under the same ids: drop what kernels cached on them.
    if (inPlace) for (const t of outs) rewroteInPlace(t);
    return outs;
  };
}

/** DistillAdamW on `wasm`, once the SIMD module has loaded (registered after it: student/kernels/lists.ts). */
export function adamwSimdKernels(): OurKernel[] {
  return kernels
    ? [{ kernelName: ADAMW_KERNEL, backendName: 'wasm', kernelFunc: adamwKernel(kernels) as unknown as tf.KernelFunc }]
    : [];
}
