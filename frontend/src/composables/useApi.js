// The one way components call the API: a loading flag and the failure in words, so no component
// hand-rolls try/finally and error wording.
import { computed, ref, shallowRef } from 'vue'

import { api } from '../api.js'
import { errorText, useT } from '../i18n.js'

/**
 * `run(path, options)` calls api() and resolves to its data (or undefined on failure, with `error` set);
 * `loading` is true while a call runs; `errorMessage` is the last failure in the user's language.
 */
export function useApi() {
  const { t, te } = useT()
  const loading = ref(false)
  const error = shallowRef(null)
  const errorMessage = computed(() => errorText(t, te, error.value))

  async function run(path, options = {}) {
    loading.value = true
    error.value = null
    try {
      return await api(path, options)
    } catch (failure) {
      error.value = failure
      return undefined
    } finally {
      loading.value = false
    }
  }

  function clear() {
    error.value = null
  }

  return { loading, error, errorMessage, run, clear }
}
