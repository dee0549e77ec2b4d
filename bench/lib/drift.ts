/** The soak's RSS drift: a least-squares slope over 30-second batch means of its plateau (bench/run.ts, bench/memlog-report.ts). */

/**
 * Where the soak's RSS plateau starts (s): the 5-minute means of the 30-minute SQLite soaks of stops 25 and 26 were
 * within 3 MiB of their plateau's mean from 60 s on, and fitting from here rather than from half the run about halves
 * a 10-minute soak's standard error (README, Performance). Runs shorter than twice this fit their second half.
 */
export const PLATEAU_S = 120

/**
 * Least-squares drift (MiB a minute) of a run's RSS plateau, with its standard error; undefined with fewer than 4
 * samples; `sdMiB` is the spread of the batch means around the fit. The plateau starts at PLATEAU_S or at half the run, whichever is earlier (`from` overrides it: the
 * second half, reported next to it).
 */
export function plateauDrift(samples: { s: number; mib: number }[], from?: number): { mibPerMin: number; seMibPerMin?: number; sdMiB?: number; n: number; batches?: number; fromS: number; fromMiB: number; toMiB: number } | undefined {
  const end = samples.at(-1)?.s ?? 0
  const half = samples.filter((x) => x.s >= (from ?? Math.min(PLATEAU_S, end / 2)))
  if (half.length < 4) return undefined
  const fit = (pts: { s: number; mib: number }[]) => {
    const mx = pts.reduce((a, x) => a + x.s, 0) / pts.length
    const my = pts.reduce((a, x) => a + x.mib, 0) / pts.length
    const sxx = pts.reduce((a, x) => a + (x.s - mx) ** 2, 0)
    const slope = pts.reduce((a, x) => a + (x.s - mx) * (x.mib - my), 0) / sxx
    const resid = pts.reduce((a, x) => a + (x.mib - my - slope * (x.s - mx)) ** 2, 0)
    const sd = pts.length > 2 ? Math.sqrt(resid / (pts.length - 2)) : undefined
    return { slope, se: sd === undefined ? undefined : sd / Math.sqrt(sxx), sd }
  }
  // RSS saws up and down with the collections, so successive samples are not independent: slope and standard
  // error come from one fit over the means of whole 30-second batches of the plateau (each spans several
  // sawtooth steps; a wander slower than 30 s is not averaged out). Short runs (fewer than 4 batches): the
  // samples' own fit, without a standard error.
  const start = half[0]!.s
  const batches = new Map<number, { s: number; mib: number; n: number }>()
  for (const x of half) {
    const b = Math.floor((x.s - start) / 30)
    const e = batches.get(b) ?? { s: 0, mib: 0, n: 0 }
    batches.set(b, { s: e.s + x.s, mib: e.mib + x.mib, n: e.n + 1 })
  }
  const last = Math.floor((end - start) / 30)
  // Whole batches only: the last one is cut by the end of the run unless the run ends on its boundary.
  const means = [...batches.entries()].filter(([b, x]) => b < last && x.n >= 25).map(([, x]) => ({ s: x.s / x.n, mib: x.mib / x.n }))
  const f = means.length >= 4 ? fit(means) : { ...fit(half), se: undefined, sd: undefined }
  return { mibPerMin: f.slope * 60, seMibPerMin: f.se === undefined ? undefined : f.se * 60, sdMiB: f.sd, n: half.length, batches: means.length >= 4 ? means.length : undefined, fromS: start, fromMiB: half[0]!.mib, toMiB: half.at(-1)!.mib }
}
