// One toast at a time for short confirmations ("Link copied"); ToastHost.vue shows it.
import { ref } from 'vue'

const TOAST_MS = 2500

export const toast = ref(null)
let timer = null

/** Shows `text` for a moment; tone is "ok" or "bad". */
export function showToast(text, tone = 'ok') {
  clearTimeout(timer)
  toast.value = { text, tone, id: Date.now() }
  timer = setTimeout(() => {
    toast.value = null
  }, TOAST_MS)
}
