// Builds the two page bundles into ../static/dist; the output is committed, so it must be deterministic.
import { fileURLToPath } from 'node:url'

import tailwindcss from '@tailwindcss/vite'
import vue from '@vitejs/plugin-vue'
import { defineConfig } from 'vite'

const outDir = fileURLToPath(new URL('../static/dist', import.meta.url))

export default defineConfig({
  // Relative base: chunks import each other relative to their own URL, so the bundle works under any
  // URL prefix Flask is mounted at (templates get entry URLs from url_for via the manifest).
  base: './',
  plugins: [vue(), tailwindcss()],
  define: {
    __VUE_OPTIONS_API__: 'false',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
  },
  build: {
    outDir,
    emptyOutDir: true,
    manifest: true,
    target: 'es2022',
    sourcemap: false,
    // The polyfill is an extra script nobody needs in the browsers Bitrix24 supports.
    modulePreload: { polyfill: false },
    rolldownOptions: {
      input: ['src/main.js', 'src/install.js'],
      output: {
        // Stable chunk names: vendor = Vue + i18n (first screen), sdk = the frame SDK with its HTTP client and
        // date library (imported on first use by frame.js), common = app code used by both pages.
        codeSplitting: {
          groups: [
            { name: 'vendor', test: /node_modules[\\/](vue|@vue|petite-vue-i18n|@intlify)[\\/]/, priority: 3 },
            { name: 'sdk', test: /node_modules/, priority: 2 },
            { name: 'common', minShareCount: 2, priority: 1 },
          ],
        },
      },
    },
  },
})
