// Loaded first (`--import`) in a daemonic billiard-ts child, before anything
// else of Node or of the package: asks Linux to kill this process when its
// parent dies (prctl PR_SET_PDEATHSIG), and exits at once if the parent is
// already gone. Plain JavaScript, so that it runs before a TypeScript loader.
import { createRequire } from 'node:module';

const parent = Number(process.env.BILLIARD_TS_PARENT_DEATH);
delete process.env.BILLIARD_TS_PARENT_DEATH; // not for grandchildren
if (parent > 0) {
  const native = createRequire(import.meta.url)('../build/Release/billiard_native.node');
  native.setParentDeathSignal(9); // SIGKILL
  if (native.parentPid() !== parent) process.exit(1);
}
