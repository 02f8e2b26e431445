// Prints the gzip size of every built file in static/dist and fails when JS + CSS exceed the budget.
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

const BUDGET_BYTES = 122880 // 120 KiB gzip for all JS + CSS together
const distDir = fileURLToPath(new URL('../../static/dist', import.meta.url))

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? walk(path) : [path]
  })
}

let files
try {
  files = walk(distDir).sort()
} catch {
  console.error(`No build output in ${distDir}; run "npm run build" first.`)
  process.exit(1)
}

const kb = (bytes) => `${(bytes / 1024).toFixed(2)} KiB`
let total = 0
for (const file of files) {
  const raw = readFileSync(file)
  const gzipped = gzipSync(raw, { level: 9 }).length
  const counted = /\.(js|css)$/.test(file)
  if (counted) total += gzipped
  const name = relative(distDir, file)
  console.log(`${name.padEnd(40)} ${kb(raw.length).padStart(12)} raw ${kb(gzipped).padStart(12)} gzip${counted ? '' : '  (not counted)'}`)
}
console.log(`${'total JS + CSS'.padEnd(40)} ${''.padStart(16)} ${kb(total).padStart(12)} gzip  (budget ${kb(BUDGET_BYTES)})`)
if (total > BUDGET_BYTES) {
  console.error(`Over budget by ${total - BUDGET_BYTES} bytes.`)
  process.exit(1)
}
