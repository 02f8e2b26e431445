// Prints the gzip size of every built file in static/dist and two totals, each with its budget:
// - first screen: what an employee's browser must load before the Conferences tab shows (the app entry, its
//   static imports, their CSS, and the Conferences tab chunk with its own static imports);
// - everything: all JS + CSS, lazy chunks (the frame SDK, the admin tabs) and the installer included.
// Fails when either total is over its budget.
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

const FIRST_SCREEN_BUDGET = 120 * 1024
const EVERYTHING_BUDGET = 180 * 1024
const ENTRY = 'src/main.js'
const FIRST_TAB = 'src/conferences/ConferencesView.vue'
const distDir = fileURLToPath(new URL('../../static/dist', import.meta.url))

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? walk(path) : [path]
  })
}

let files
let manifest
try {
  files = walk(distDir).sort()
  manifest = JSON.parse(readFileSync(join(distDir, '.vite', 'manifest.json'), 'utf8'))
} catch {
  console.error(`No build output in ${distDir}; run "npm run build" first.`)
  process.exit(1)
}

/** Files (relative to dist) that loading `keys` pulls in through static imports, CSS included. */
function closure(keys) {
  const seen = new Set()
  const out = new Set()
  const visit = (key) => {
    if (seen.has(key) || !manifest[key]) return
    seen.add(key)
    const chunk = manifest[key]
    out.add(chunk.file)
    for (const css of chunk.css || []) out.add(css)
    for (const imported of chunk.imports || []) visit(imported)
  }
  keys.forEach(visit)
  return out
}

for (const key of [ENTRY, FIRST_TAB]) {
  if (!manifest[key]) {
    console.error(`The manifest has no ${key}: the size script and the build disagree.`)
    process.exit(1)
  }
}
const firstScreen = closure([ENTRY, FIRST_TAB])

const kb = (bytes) => `${(bytes / 1024).toFixed(2)} KiB`
let total = 0
let first = 0
for (const file of files) {
  const raw = readFileSync(file)
  const gzipped = gzipSync(raw, { level: 9 }).length
  const counted = /\.(js|css)$/.test(file)
  const name = relative(distDir, file)
  const inFirst = firstScreen.has(name)
  if (counted) total += gzipped
  if (counted && inFirst) first += gzipped
  const note = !counted ? '  (not counted)' : inFirst ? '  first screen' : '  later (lazy chunk or the installer)'
  console.log(`${name.padEnd(44)} ${kb(raw.length).padStart(12)} raw ${kb(gzipped).padStart(12)} gzip${note}`)
}
console.log(`${'first screen JS + CSS'.padEnd(44)} ${''.padStart(16)} ${kb(first).padStart(12)} gzip  (budget ${kb(FIRST_SCREEN_BUDGET)})`)
console.log(`${'everything JS + CSS'.padEnd(44)} ${''.padStart(16)} ${kb(total).padStart(12)} gzip  (budget ${kb(EVERYTHING_BUDGET)})`)
let over = false
if (first > FIRST_SCREEN_BUDGET) {
  console.error(`First screen over budget by ${first - FIRST_SCREEN_BUDGET} bytes.`)
  over = true
}
if (total > EVERYTHING_BUDGET) {
  console.error(`Everything over budget by ${total - EVERYTHING_BUDGET} bytes.`)
  over = true
}
process.exit(over ? 1 : 0)
