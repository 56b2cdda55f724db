// One animation frame for all DOM work: event handlers only record what changed and call
// `invalidate(render)`; the renders run once per frame, however many events came in between
// (200 results/s must not mean 200 layouts/s). A render that throws is reported and the others
// still run.

const dirty = new Set();
let requested = false;

function flush() {
  requested = false;
  const renders = [...dirty];
  dirty.clear();
  for (const render of renders) {
    try {
      render();
    } catch (exc) {
      console.error(exc);
    }
  }
}

export function invalidate(render) {
  dirty.add(render);
  if (!requested) {
    requested = true;
    requestAnimationFrame(flush);
  }
}
