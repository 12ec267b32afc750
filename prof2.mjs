import * as tf from '@tensorflow/tfjs';
import { selectBackend } from './dist/student/backend.js';
import { initStudentFromTeacher } from './dist/student/init.js';
import { readEncoderConfig } from './dist/src/model-dir.js';
import { lossRows } from './dist/losses/rows.js';
import { distillLosses, RECIPE_LOSS_WEIGHTS } from './dist/losses/total.js';
import { teacherSoftTargets } from './dist/losses/fused.js';
await selectBackend('wasm');
const cfg = readEncoderConfig('teacher/tiny-bert-cased');
const st = initStudentFromTeacher('teacher/tiny-bert-cased', cfg, [0,3], 0);
const B=32,T=128,V=6144,H=192;
const ids = Int32Array.from({length:B*T}, (_, i) => 5 + (i*7919)%6000);
const mask = new Int32Array(B*T).fill(1);
const labels = Int32Array.from(ids, (id,i) => (i%7==0 ? id : -100));
const rows = lossRows(mask, labels, B, T, V);
const tl = new Float32Array(B*T*V).map(()=>Math.random()); const th = new Float32Array(B*T*H).map(()=>Math.random());
const soft = teacherSoftTargets(tl, rows.realRows, V, 2, false);
const step = () => tf.tidy(() => { const {grads} = tf.variableGrads(() => distillLosses(st, tf.tensor2d(ids,[B,T],'int32'), tf.tensor2d(mask,[B,T],'int32'), rows, {lastHidden: th, soft}, RECIPE_LOSS_WEIGHTS, {training:false}).loss, st.variables()); Object.values(grads).forEach(g=>g.dataSync()); });
step();
let t0=performance.now(); step(); console.log('step ms', performance.now()-t0);
const prof = await tf.profile(() => { step(); });
const agg = {};
for (const k of prof.kernels) { const key = k.name + ' ' + JSON.stringify(k.inputShapes); agg[key] = agg[key] || {ms:0,n:0}; agg[key].ms += k.kernelTimeMs; agg[key].n++; }
const byName = {}; for (const k of prof.kernels) { byName[k.name] = (byName[k.name]||0) + k.kernelTimeMs; }
console.log('by kernel', Object.entries(byName).sort((a,b)=>b[1]-a[1]).slice(0,16).map(([k,v])=>k+':'+v.toFixed(0)).join(' '));
for (const [k,v] of Object.entries(agg).sort((a,b)=>b[1].ms-a[1].ms).slice(0,12)) console.log(v.ms.toFixed(1).padStart(8), v.n, k);
