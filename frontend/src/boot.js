// Reads the server-rendered boot data from <script id="boot" type="application/json">.

/** Returns the parsed boot object, or {} when the page carries none. */
export function readBoot() {
  const node = document.getElementById('boot')
  if (!node) return {}
  try {
    return JSON.parse(node.textContent || '{}') || {}
  } catch {
    return {}
  }
}
