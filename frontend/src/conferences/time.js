// Dates of conferences as the API carries them (start_date YYYY-MM-DD, start_time HH:MM, an IANA zone).

/** "12 March 2027, 14:30 – 15:30 (Europe/Moscow)" in the UI's locale; the date part only when no time. */
export function formatWhen(item, locale) {
  if (!item.start_date) return ''
  const [year, month, day] = String(item.start_date).split('-').map(Number)
  const date = new Date(Date.UTC(year, (month || 1) - 1, day || 1))
  const dateText = new Intl.DateTimeFormat(locale, { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' }).format(date)
  if (!item.start_time) return dateText
  let text = `${dateText}, ${item.start_time}`
  const minutes = Number(item.duration_minutes) || 0
  if (minutes > 0) text += ` – ${addMinutes(item.start_time, minutes)}`
  if (item.timezone) text += ` (${item.timezone})`
  return text
}

/** "14:30" + 90 → "16:00" (wraps past midnight). */
export function addMinutes(time, minutes) {
  const [hours, mins] = String(time).split(':').map(Number)
  const total = ((hours * 60 + mins + minutes) % 1440 + 1440) % 1440
  return `${String(Math.floor(total / 60)).padStart(2, '0')}:${String(total % 60).padStart(2, '0')}`
}

/** Today as YYYY-MM-DD in the browser's zone. */
export function today() {
  const now = new Date()
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`
}

/** The next full hour as HH:MM. */
export function nextHour() {
  return `${String((new Date().getHours() + 1) % 24).padStart(2, '0')}:00`
}

/** The browser's IANA zone, the form's default. */
export function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || ''
  } catch {
    return ''
  }
}

/** Every IANA zone the browser knows (for the zone field's suggestions). */
export function knownZones() {
  try {
    return Intl.supportedValuesOf('timeZone')
  } catch {
    return ['Europe/Moscow', 'Europe/Kaliningrad', 'Asia/Yekaterinburg', 'Asia/Novosibirsk', 'Asia/Vladivostok', 'UTC']
  }
}
