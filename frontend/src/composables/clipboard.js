// Copy text from inside the portal iframe: the Clipboard API where the frame is allowed to write, else the
// old execCommand('copy') on a temporary selection (Bitrix24 does not always delegate clipboard-write).

/** Copies `text`; resolves to true when one of the two ways worked. */
export async function copyText(text) {
  try {
    if (navigator.clipboard?.writeText) {
      await navigator.clipboard.writeText(text)
      return true
    }
  } catch {
    // Denied in this frame: fall through to the selection copy.
  }
  const area = document.createElement('textarea')
  area.value = text
  area.setAttribute('readonly', '')
  area.style.cssText = 'position:fixed;top:0;left:0;opacity:0;pointer-events:none'
  document.body.appendChild(area)
  area.select()
  let copied = false
  try {
    copied = document.execCommand('copy')
  } catch {
    copied = false
  }
  document.body.removeChild(area)
  return copied
}
