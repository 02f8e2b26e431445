// Moments the bot API gives as Unix seconds (or ISO strings), shown in the UI's locale.

/** "12 Mar 2027, 14:30" for a Unix time or ISO string; '' for nothing. */
export function formatMoment(value, locale) {
  if (value === null || value === undefined || value === '') return ''
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value)
  if (Number.isNaN(date.getTime())) return String(value)
  return new Intl.DateTimeFormat(locale, { day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' }).format(date)
}

/** Unix seconds at the start of a YYYY-MM-DD day in the browser's zone (plus `days`), for the API's from/to. */
export function dayStart(text, days = 0) {
  if (!text) return ''
  const [year, month, day] = text.split('-').map(Number)
  return String(Math.floor(new Date(year, month - 1, day + days).getTime() / 1000))
}
