// The 3D viewer, loaded only when a run has a mesh or scene to show: three.js with orbit
// controls, for GLB (VGGT's point clouds and cameras, meshes), OBJ and PLY.

import {
  AmbientLight, Box3, BufferGeometry, Color, DirectionalLight, Mesh, MeshStandardMaterial, Object3D,
  PerspectiveCamera, Points, PointsMaterial, Scene, Vector3, WebGLRenderer,
} from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { OBJLoader } from "three/addons/loaders/OBJLoader.js";
import { PLYLoader } from "three/addons/loaders/PLYLoader.js";

const BACKGROUND = 0x20242c;
let current: { dispose(): void } | null = null;

async function load(url: string, filename: string): Promise<Object3D> {
  const ext = filename.split(".").pop()?.toLowerCase();
  if (ext === "obj") return new OBJLoader().loadAsync(url);
  if (ext === "ply") {
    const geom: BufferGeometry = await new PLYLoader().loadAsync(url);
    if (geom.index === null && !geom.hasAttribute("normal")) {
      // Vertices only: a point cloud.
      return new Points(geom, new PointsMaterial({ size: 2, sizeAttenuation: false, vertexColors: geom.hasAttribute("color") }));
    }
    geom.computeVertexNormals();
    return new Mesh(geom, new MeshStandardMaterial({ vertexColors: geom.hasAttribute("color"), color: geom.hasAttribute("color") ? 0xffffff : 0xb8c4d6 }));
  }
  const gltf = await new GLTFLoader().loadAsync(url);
  return gltf.scene;
}

/** Shows the model at `url` in `holder`, replacing what it showed; resolves once drawn. */
export async function showModel(holder: HTMLElement, url: string, filename: string): Promise<void> {
  current?.dispose();
  current = null;
  holder.replaceChildren();
  holder.setAttribute("aria-busy", "true");
  const object = await load(url, filename);
  let points = 0;
  object.traverse((o) => {
    if (o instanceof Points) {
      // Scenes of millions of points: one pixel each reads as noise, so a fixed small size.
      const m = o.material as PointsMaterial;
      m.size = 2;
      m.sizeAttenuation = false;
      points += o.geometry.getAttribute("position")?.count ?? 0;
    }
  });
  const scene = new Scene();
  scene.background = new Color(BACKGROUND);
  scene.add(new AmbientLight(0xffffff, 1.2));
  const sun = new DirectionalLight(0xffffff, 2);
  sun.position.set(1, 2, 3);
  scene.add(sun, object);

  // preserveDrawingBuffer: what is drawn can be read back (a screenshot, a test's pixel check).
  const renderer = new WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
  const canvas = renderer.domElement;
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `3D view of ${filename}${points ? `, ${points} points` : ""}: drag or use the arrow keys to turn it, scroll or +/- to zoom`);
  holder.append(canvas, Object.assign(document.createElement("p"), { className: "hint", textContent: "Drag to orbit · scroll to zoom · arrows pan" }));

  const camera = new PerspectiveCamera(50, 4 / 3, 0.001, 1e6);
  const box = new Box3().setFromObject(object);
  const size = box.getSize(new Vector3()).length() || 1;
  const centre = box.getCenter(new Vector3());
  camera.position.copy(centre).add(new Vector3(0, size * 0.2, size * 0.75));
  camera.near = size / 1000;
  camera.far = size * 100;
  camera.updateProjectionMatrix();
  const controls = new OrbitControls(camera, canvas);
  controls.target.copy(centre);
  controls.listenToKeyEvents(canvas);
  controls.update();

  const draw = () => renderer.render(scene, camera);
  const resize = () => {
    const w = holder.clientWidth || 640;
    const hgt = holder.clientHeight || 480;
    renderer.setSize(w, hgt, false);
    camera.aspect = w / hgt;
    camera.updateProjectionMatrix();
    draw();
  };
  const observer = new ResizeObserver(resize);
  observer.observe(holder);
  controls.addEventListener("change", draw);
  canvas.addEventListener("keydown", (e) => {
    if (e.key === "+" || e.key === "=") camera.position.lerp(controls.target, 0.15);
    else if (e.key === "-") camera.position.sub(controls.target).multiplyScalar(1.15).add(controls.target);
    else return;
    controls.update();
    draw();
  });
  resize();
  holder.removeAttribute("aria-busy");
  holder.setAttribute("data-drawn", String(points || 1));
  current = {
    dispose() {
      observer.disconnect();
      controls.dispose();
      renderer.dispose();
    },
  };
}
