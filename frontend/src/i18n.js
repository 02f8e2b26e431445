// RU/EN through petite-vue-i18n (the lighter build of vue-i18n): one catalog per language in locales/.
// The language is the portal user's LANG from the boot data; Bitrix24 codes other than ru/en read as English,
// as on the server (routes/i18n normalize_language).
import { createI18n, useI18n } from 'petite-vue-i18n'

import en from './locales/en.js'
import ru from './locales/ru.js'

export const LANGUAGES = ['ru', 'en']

/** 'ru', 'en', 'ua', 'de' … → 'ru' | 'en' (default 'ru' when nothing usable is given). */
export function normalizeLanguage(raw) {
  const code = String(raw || '').trim().toLowerCase().slice(0, 2)
  if (!code) return 'ru'
  if (LANGUAGES.includes(code)) return code
  return /^[a-z]{2}$/.test(code) ? 'en' : 'ru'
}

/** The page language: boot.lang, else the LANG that Bitrix24 put in the page URL. */
export function pageLanguage(boot) {
  return normalizeLanguage(boot?.lang || new URLSearchParams(window.location.search).get('LANG'))
}

// petite-vue-i18n resolves keys as plain strings, not paths: the nested catalogs are flattened to "a.b.c" keys.
function flatten(tree, prefix = '', out = {}) {
  for (const [key, value] of Object.entries(tree)) {
    if (value && typeof value === 'object') flatten(value, `${prefix}${key}.`, out)
    else out[`${prefix}${key}`] = value
  }
  return out
}

/** The i18n plugin for the app in `lang`; also sets <html lang>. */
export function makeI18n(lang) {
  document.documentElement.lang = lang
  return createI18n({
    locale: lang,
    fallbackLocale: 'en',
    messages: { ru: flatten(ru), en: flatten(en) },
    missingWarn: false,
    fallbackWarn: false,
    // Messages are rendered as text ({{ }}), never v-html; '<token>' in a curl example is not markup.
    warnHtmlMessage: false,
  })
}

/**
 * Words for a failure: the catalog's `error.<code>` (with the answer's extra fields as parameters), else a
 * message by HTTP status. The server's English `message` is never shown to a Russian user.
 */
export function errorText(t, te, error) {
  if (!error) return ''
  const code = error.code || ''
  const data = error.data || {}
  const params = { ...data, request_id: data.request_id || '' }
  if (Array.isArray(data.emails)) params.emails = data.emails.join(', ')
  if (code && te(`error.${code}`)) {
    const text = t(`error.${code}`, params)
    // Yandex's request id lets an admin quote the failure to Yandex support.
    return data.request_id ? `${text} ${t('error.support_id', { id: data.request_id })}` : text
  }
  const status = Number(error.status)
  if (status === 0) return t('error.network_error')
  if (status === 401) return t('error.session_expired')
  if (status === 403) return t('error.forbidden')
  if (status === 404) return t('error.not_found')
  if (status === 429) return t('error.rate_limited')
  if (status >= 500) return t('error.server_error')
  return t('error.request_failed', { status })
}

/**
 * useI18n() plus `te(key)`: petite-vue-i18n's composer has no `te` at run time (its types claim one), and the
 * UI asks "is there a text for this code?" before falling back to other words.
 */
export function useT() {
  const composer = useI18n()
  const te = (key) => {
    const own = composer.getLocaleMessage(composer.locale.value) || {}
    return key in own || key in (composer.getLocaleMessage('en') || {})
  }
  return { t: composer.t, te, locale: composer.locale }
}
