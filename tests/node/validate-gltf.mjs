// Validates a GLB/glTF file with the Khronos glTF validator and prints its report as JSON.
// Exit code: 0 when the report has no errors, 1 when it has, 2 on bad usage.
import { readFileSync } from "node:fs";
import validator from "gltf-validator";

const path = process.argv[2];
if (!path) {
  console.error("usage: node validate-gltf.mjs FILE.glb");
  process.exit(2);
}
const report = await validator.validateBytes(new Uint8Array(readFileSync(path)), {
  maxIssues: 100,
});
console.log(JSON.stringify(report));
process.exit(report.issues.numErrors === 0 ? 0 : 1);
