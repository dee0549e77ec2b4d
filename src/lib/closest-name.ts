/** "Did you mean …?" for misspelled names: the nearest candidate by optimal-string-alignment distance. */

/** Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}

/** The candidate closest to `name` (case-insensitive), if it is near enough to be a typo. */
export function closestName(name: string, candidates: Iterable<string>): string | undefined {
  const upper = name.toUpperCase()
  const limit = Math.max(2, Math.floor(upper.length / 4))
  let best: string | undefined
  let bestDistance = Number.POSITIVE_INFINITY
  for (const c of candidates) {
    const dist = editDistance(upper, c.toUpperCase())
    if (dist < bestDistance) {
      best = c
      bestDistance = dist
    }
  }
  return bestDistance <= limit ? best : undefined
}
