"""Benchmark: load a training subset from the decoded cache vs decoding the MP3s every time.

Usage: python bench/bench_audio_cache.py [--work DIR] [--repeats 3]

Synthesises a one-language toy corpus, prepares an SV training set (N=40, K=4: 80 clips in a+b), then loads
every training clip (a) with ``speechbrain.dataio.dataio.read_audio`` from the cache and (b) by
decoding and resampling its MP3 with ``cltm_sb.data.audio.decode_clip``. Prints both times and
the ratio.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import speechbrain as sb

    from cltm_sb.data.audio import decode_clip
    from cltm_sb.data.common_voice import prepare_common_voice
    from cltm_sb.data.synth import CorpusSize, synthesize_corpus

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        corpus = synthesize_corpus(work / "cv", seed=0, n_languages=1, size=CorpusSize())
        info = prepare_common_voice(corpus, ["qaa"], "sv", 40, work / "prep", clips_per_speaker=4, progress=False)
        root = Path(info["data_root"])
        rows = pd.concat(pd.read_csv(work / "prep" / "qaa" / f"{s}.csv") for s in ("a", "b"))
        cached = [str(root / w.replace("$data_root/", "")) for w in rows["wav"]]
        mp3 = [str(corpus / "qaa" / "clips" / f"{i.split('_', 1)[1]}.mp3") for i in rows["ID"]]

        def timed(load, paths) -> float:
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                for path in paths:
                    load(path)
                best = min(best, time.perf_counter() - start)
            return best

        t_cache = timed(sb.dataio.dataio.read_audio, cached)
        t_mp3 = timed(decode_clip, mp3)
        print(f"clips: {len(cached)} (mean {rows['duration'].mean():.2f} s, MP3 32 kHz mono)")
        print(f"cache (read_audio, 16 kHz WAV): {t_cache:.3f} s  ({1000 * t_cache / len(cached):.2f} ms/clip)")
        print(f"MP3 decode + resample:          {t_mp3:.3f} s  ({1000 * t_mp3 / len(cached):.2f} ms/clip)")
        print(f"speed-up: {t_mp3 / t_cache:.1f}x (best of {args.repeats})")


if __name__ == "__main__":
    main()
