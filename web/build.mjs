// Builds the page into dist/ (embedded in `spaceport serve`): main.js, the entry, and viewer.js,
// three.js and its loaders, fetched only when a run has something to show in 3D.
// `node build.mjs --check` builds in memory and fails if dist/ differs (a commit without a build).
import { build } from "esbuild";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";

const check = process.argv.includes("--check");
const common = {
  bundle: true, minify: true, format: "esm", target: ["es2022"], write: false,
  legalComments: "none", logLevel: "warning",
};
const out = {};
for (const [name, extra] of [["main", { external: ["./viewer.js"] }], ["viewer", {}]]) {
  const r = await build({ ...common, ...extra, entryPoints: [`src/${name}.ts`] });
  out[`${name}.js`] = r.outputFiles[0].contents;
}
const css = await build({ ...common, format: undefined, entryPoints: ["src/app.css"], loader: { ".css": "css" } });
out["app.css"] = css.outputFiles[0].contents;
out["index.html"] = readFileSync("src/index.html");

let stale = [];
if (!check) mkdirSync("dist", { recursive: true });
for (const [file, bytes] of Object.entries(out)) {
  const path = `dist/${file}`;
  if (check) {
    if (!existsSync(path) || !Buffer.from(bytes).equals(readFileSync(path))) stale.push(path);
  } else {
    writeFileSync(path, bytes);
    console.log(`${path} ${bytes.length} bytes`);
  }
}
if (stale.length) {
  console.error(`web: ${stale.join(", ")} differ from web/src: run \`npm --prefix web run build\` and commit web/dist`);
  process.exit(1);
}
