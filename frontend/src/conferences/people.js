// Names of portal employees seen in this page (picker, search): the API answers invitees as ids only, and an
// edit form opened later in the same page can still show names instead of numbers.
const names = new Map()

/** Remember {id, name} pairs. */
export function rememberPeople(list) {
  for (const user of list) if (user?.id && user.name) names.set(Number(user.id), user.name)
}

/** The remembered name of an employee, or ''. */
export function personName(id) {
  return names.get(Number(id)) || ''
}
