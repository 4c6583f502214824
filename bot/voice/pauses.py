"""Where long speech is cut into WeChat voice parts: in the pauses of its decoded samples.

A cut is looked for in the ``lookback`` (10 s by default) before each part's limit, on a 20 ms grid (one AMR
frame, so no part is padded but the last). Energy is measured per 20 ms block:

- a block is *quiet* when its RMS is 35 dB or more below the speech around it (the 90th percentile of the
  look-back's blocks) or below -60 dBFS whatever the speech; synthesizers leave near digital silence between
  sentences, a recording its noise floor, both well under that;
- a *pause* is a run of at least 100 ms of quiet blocks: longer than a stop's closure inside a word (espeak-ng:
  30-40 ms of silence), as long as a comma's pause or more (espeak-ng: ~150 ms after a comma, 300-340 ms after
  a full stop; the sandbox: 200 ms per punctuation mark);
- the longest pause of the look-back wins, as a sentence's end is the longest pause around it; pauses at least
  3/4 as long count as as long, and the latest of them wins, for the longest part. A pause that runs past the
  limit is weighed whole (up to 500 ms past it). The cut lies in the pause's middle, or 200 ms before the speech
  resumes when the pause is longer than 400 ms, and at the limit when that is earlier;
- with no pause in the look-back (10 s of unbroken sound), the cut is the middle of its quietest 40 ms.

With ``max_parts``, a cut never reaches back further than the speech can afford: the parts still number at most
``max_parts`` when the speech is nearly that long.
"""
from __future__ import annotations

import operator
from array import array

__all__ = ["BLOCK_S", "LOOKBACK_S", "block_samples", "split_points"]

BLOCK_S = 0.02  # 20 ms: one AMR-NB frame
LOOKBACK_S = 10.0  # how far before a part's limit a pause is looked for
_QUIET_DB = 35.0  # a block this far below the speech level is quiet ...
_SPEECH_PERCENTILE = 0.9  # ... the speech level being this percentile of the look-back's block RMS ...
_FLOOR_RMS = 32768 * 10 ** (-60 / 20)  # ... and a block under -60 dBFS is quiet whatever the speech
_MIN_PAUSE_S = 0.1
_AS_LONG = 0.75  # a pause this fraction of the longest one's length is as good: the latest of them wins
_LEAD_S = 0.2  # the most of a long pause the next part begins with
_AHEAD_S = 0.5  # a pause that runs past the limit is measured this far past it, to weigh it whole
_NEAR_QUIETEST = 1.1  # no pause: windows within 10 % of the quietest count as as quiet, the latest wins


def block_samples(rate: int) -> int:
    """Samples per 20 ms block at ``rate``: cuts and part limits lie on multiples of it."""
    return max(1, int(BLOCK_S * rate))


def split_points(pcm: array, rate: int, part_samples: int, lookback_samples: int,
                 max_parts: int | None = None) -> list[int]:
    """Sample offsets ``[0, cut, ..., len(pcm)]`` with no part longer than ``part_samples``, each cut in the
    best pause of the ``lookback_samples`` before its limit (see the module's docstring).

    With ``max_parts`` (and ``len(pcm) <= max_parts * part_samples``), there are at most ``max_parts`` parts.
    """
    block = block_samples(rate)
    n = len(pcm)
    # what all cuts together may give away to their pauses, the last part absorbing it (no bound: n is more)
    spare = max_parts * part_samples - n if max_parts is not None else n
    cuts, start = [0], 0
    while n - start > part_samples:
        end = start + part_samples
        reach = max(0, min(lookback_samples, spare, end - start - block))
        first = -(-(end - reach) // block)  # the look-back's whole blocks are [first, last) ...
        last = end // block
        beyond = min(last + round(_AHEAD_S / BLOCK_S), n // block)  # ... and a pause is measured up to here
        energies = [_energy(pcm, b * block, block) for b in range(first, beyond)]
        cut = (first + _best_block(energies, last - first, block)) * block if last > first else end
        spare -= end - cut
        cuts.append(cut)
        start = cut
    cuts.append(n)
    return cuts


def _best_block(energies: list[int], within: int, block: int) -> int:
    """Index of the block boundary to cut at (0 .. ``within``): in the best pause, else the quietest window.

    Blocks from ``within`` on lie past the limit: they only tell how long a pause that runs over it is."""
    pauses = [(a, b) for a, b in _pauses(energies, block) if a < within]
    if pauses:
        longest = max(b - a for a, b in pauses)
        a, b = [p for p in pauses if p[1] - p[0] >= _AS_LONG * longest][-1]
        return min(max((a + b) // 2, b - round(_LEAD_S / BLOCK_S)), within)
    energies = energies[:within]
    if len(energies) < 2:
        return len(energies)  # a look-back shorter than a window: cut at the limit
    pairs = [energies[i] + energies[i + 1] for i in range(len(energies) - 1)]
    quiet_enough = min(pairs) * _NEAR_QUIETEST + block  # +block: all-silent windows tie
    return max(j for j, e in enumerate(pairs) if e <= quiet_enough) + 1  # between the window's two blocks


def _pauses(energies: list[int], block: int) -> list[tuple[int, int]]:
    """Runs ``[a, b)`` of quiet blocks at least ``_MIN_PAUSE_S`` long, in order."""
    if not energies:
        return []
    level = sorted(energies)[int(_SPEECH_PERCENTILE * (len(energies) - 1))]
    threshold = max(level * 10 ** (-_QUIET_DB / 10), _FLOOR_RMS ** 2 * block)  # energies are sums of squares
    min_blocks = round(_MIN_PAUSE_S / BLOCK_S)
    runs, a = [], None
    for i, e in enumerate(energies):
        if e <= threshold:
            a = i if a is None else a
        elif a is not None:
            runs.append((a, i))
            a = None
    if a is not None:
        runs.append((a, len(energies)))
    return [(a, b) for a, b in runs if b - a >= min_blocks]


def _energy(pcm: array, start: int, length: int) -> int:
    window = pcm[start:start + length]
    return sum(map(operator.mul, window, window))
