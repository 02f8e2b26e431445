// Fails when the RU and EN catalogs (src/locales) differ in their keys, or when a component asks for a literal
// key that neither has: every visible string goes through the catalog, in both languages.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import en from '../src/locales/en.js'
import ru from '../src/locales/ru.js'

const srcDir = fileURLToPath(new URL('../src', import.meta.url))

function flatten(tree, prefix = '', out = {}) {
  for (const [key, value] of Object.entries(tree)) {
    if (value && typeof value === 'object') flatten(value, `${prefix}${key}.`, out)
    else out[`${prefix}${key}`] = value
  }
  return out
}

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? walk(path) : [path]
  })
}

const catalogs = { ru: flatten(ru), en: flatten(en) }
const problems = []
for (const [lang, other] of [['ru', 'en'], ['en', 'ru']]) {
  for (const key of Object.keys(catalogs[other])) if (!(key in catalogs[lang])) problems.push(`${lang} lacks ${key}`)
}
// Literal keys only: t('a.b') and t("a.b"); keys built at run time are checked by te() where they are used.
const literal = /\bt\(\s*(['"])([\w.-]+)\1/g
for (const file of walk(srcDir).filter((f) => /\.(vue|js)$/.test(f))) {
  for (const match of readFileSync(file, 'utf8').matchAll(literal)) {
    if (!(match[2] in catalogs.en)) problems.push(`${file}: unknown key ${match[2]}`)
  }
}
if (problems.length) {
  console.error(problems.join('\n'))
  process.exit(1)
}
console.log(`catalogs: ${Object.keys(catalogs.ru).length} keys in ru and en`)
