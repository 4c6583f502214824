"""In-process audio: WeChat voice (AMR-NB, AMR-WB, Speex, mp3, wav) to the mp3 WeChat's recognizer wants.

Everything runs through PyAV (FFmpeg's libraries) inside the process: no ffmpeg binary, no subprocess,
no per-sample Python work on the transcode path. The recognizer (``addvoicetorecofortext``) accepts only
mp3, 16 kHz, mono, <= 1 MB, so :func:`transcode_to_mp3` produces exactly that and trims long clips.

:func:`decode_pcm` also serves :mod:`bot.voice.tones`, with which tests and the local sandbox make real voice clips
and tell, from the audio alone, which clip came back.
"""
from __future__ import annotations

import io
import logging
import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import av

log = logging.getLogger("bot.audio")

__all__ = ["AudioError", "AudioInfo", "Transcoded", "transcode_to_mp3", "decode_pcm", "encode_pcm", "ENCODINGS"]

# LAME's fastest quality setting (0 best .. 9 fastest): speech for a recognizer does not need more.
_LAME_FASTEST = "9"
# Bytes kept free for the Xing/Info frame, encoder delay/padding frames and rounding.
_MP3_HEADROOM_FRAMES = 4
_MP3_HEADROOM_BYTES = 256


class AudioError(Exception):
    """Audio that cannot be decoded (empty, garbage, unsupported container) or cannot fit the limits."""


@dataclass(frozen=True)
class Transcoded:
    """Result of :func:`transcode_to_mp3`; ``trimmed`` says whether the tail was cut to fit ``max_bytes``."""

    data: bytes
    duration_s: float
    input_codec: str
    trimmed: bool
    source_duration_s: float


@dataclass(frozen=True)
class AudioInfo:
    """What the *input* stream was, so callers can validate uploads (codec, rate, channels, length)."""

    codec: str  # FFmpeg's canonical codec name: "mp3", "amr_nb", "amr_wb", "speex", "pcm_s16le", ...
    container: str  # demuxer name: "mp3", "amr", "ogg", "wav", ...
    sample_rate: int
    channels: int
    duration_s: float


# --------------------------------------------------------------------------------------------- decoding


def _open_input(data: bytes) -> tuple[av.container.InputContainer, av.AudioStream]:
    """Open ``data`` with PyAV's format probing, or raise :class:`AudioError` saying why not."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise AudioError(f"audio must be bytes, not {type(data).__name__}")
    if len(data) == 0:
        raise AudioError("audio is empty (0 bytes)")
    try:
        container = av.open(io.BytesIO(bytes(data)), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioError(f"cannot open audio ({len(data)} bytes): {exc}") from exc
    if not container.streams.audio:
        container.close()
        raise AudioError(f"no audio stream in {container.format.name!r} data")
    return container, container.streams.audio[0]


def _codec_name(stream: av.AudioStream) -> str:
    codec = stream.codec_context.codec
    return getattr(codec, "canonical_name", None) or codec.name


def _channels(stream: av.AudioStream) -> int:
    return int(stream.codec_context.layout.nb_channels or 1)


def _decoded_frames(container: av.container.InputContainer, stream: av.AudioStream) -> Iterable[av.AudioFrame]:
    """Decoded frames of ``stream``; FFmpeg errors become :class:`AudioError`.

    Once some audio has decoded, a bad packet (typically a truncated last frame) is skipped rather than
    losing the whole clip; an error before any audio means the data is not audio we understand.
    """
    decoded = skipped = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
            frames = packet.decode()
        except StopIteration:
            break
        except av.FFmpegError as exc:
            if not decoded:
                raise AudioError(f"cannot decode {_codec_name(stream)} audio: {exc}") from exc
            skipped += 1
            if skipped > 50:
                raise AudioError(f"too many corrupt {_codec_name(stream)} packets: {exc}") from exc
            continue
        for frame in frames:
            decoded += 1
            yield frame
    if skipped:
        log.warning("skipped %d undecodable %s packet(s) after %d frames", skipped, _codec_name(stream), decoded)


def _head(frame: av.AudioFrame, samples: int) -> av.AudioFrame:
    """The first ``samples`` samples of ``frame`` as a new frame (any sample format, packed or planar)."""
    fmt = frame.format
    per_plane = samples * fmt.bytes * (1 if fmt.is_planar else len(frame.layout.channels))
    out = av.AudioFrame(format=fmt.name, layout=frame.layout.name, samples=samples)
    for src, dst in zip(frame.planes, out.planes):
        dst.update(bytes(src)[:per_plane])
    out.sample_rate = frame.sample_rate
    return out


def decode_pcm(
    data: bytes, *, sample_rate: int = 16000, max_seconds: float | None = None
) -> tuple[array, AudioInfo]:
    """Decode any supported audio to mono s16 samples at ``sample_rate`` (for validation and tone checks).

    The returned :class:`AudioInfo` describes the input stream, not the resampled output, so the sandbox
    can reject uploads that are not mp3 / 16 kHz / mono. ``max_seconds`` bounds the work on long input.
    """
    container, stream = _open_input(data)
    try:
        ctx = stream.codec_context
        in_rate = int(ctx.sample_rate or stream.sample_rate or 0)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        out = array("h")
        limit = None if max_seconds is None else max(0, int(max_seconds * sample_rate))
        in_samples = 0
        for frame in _decoded_frames(container, stream):
            in_rate = in_rate or frame.sample_rate
            in_samples += frame.samples
            for res in resampler.resample(frame):
                out.frombytes(bytes(res.planes[0])[: res.samples * 2])
            if limit is not None and len(out) >= limit:
                break
        else:
            for res in resampler.resample(None):
                out.frombytes(bytes(res.planes[0])[: res.samples * 2])
        if in_samples == 0:
            raise AudioError(f"no audio samples decoded from {_codec_name(stream)} data")
        if limit is not None and len(out) > limit:
            del out[limit:]
        info = AudioInfo(
            codec=_codec_name(stream),
            container=container.format.name,
            sample_rate=in_rate,
            channels=_channels(stream),
            duration_s=in_samples / in_rate if in_rate else 0.0,
        )
        return out, info
    finally:
        container.close()


# --------------------------------------------------------------------------------------------- encoding samples

ENCODINGS: dict[str, tuple[str, str, int, int | None]] = {
    # fmt: (container format, encoder, default rate, bit rate per channel)
    "amr": ("amr", "libopencore_amrnb", 8000, 12200),  # AMR-NB: WeChat's own voice format
    "mp3": ("mp3", "libmp3lame", 16000, 32000),
    "wav": ("wav", "pcm_s16le", 16000, None),
    "opus": ("ogg", "libopus", 48000, 32000),  # libopus takes 8/12/16/24/48 kHz
    "aac": ("adts", "aac", 16000, 32000),
    "flac": ("flac", "flac", 16000, None),
}


def encode_pcm(samples: array, sample_rate: int, *, fmt: str = "wav", channels: int = 1, fast: bool = False) -> bytes:
    """Encode s16 samples (interleaved when ``channels`` > 1) as one of :data:`ENCODINGS`, in one call.

    Voice replies (bot/voice/speech.py) and test tones (bot/voice/tones.py) both end here; ``fast`` picks LAME's
    fastest quality for mp3, which speech does not need more than. Tests also build deliberately wrong audio
    with it (8 kHz mp3, stereo, pitch-shifted).
    """
    try:
        container_fmt, encoder, _, bit_rate = ENCODINGS[fmt]
    except KeyError:
        raise ValueError(f"fmt must be one of {sorted(ENCODINGS)}, not {fmt!r}") from None
    if fmt == "amr" and (sample_rate != 8000 or channels != 1):
        raise ValueError("AMR-NB is 8000 Hz mono only")
    if channels not in (1, 2):
        raise ValueError("channels must be 1 or 2")
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    options = {"id3v2_version": "0"} if fmt == "mp3" else {}
    with av.open(buf, mode="w", format=container_fmt, options=options) as out:
        stream: Any = out.add_stream(encoder, rate=sample_rate,
                                     options={"compression_level": _LAME_FASTEST} if fast and fmt == "mp3" else {})
        stream.layout = layout
        if bit_rate:
            stream.bit_rate = bit_rate * channels
        frame = av.AudioFrame(format="s16", layout=layout, samples=len(samples) // channels)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = sample_rate
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- mp3 encoding


def _mp3_frame_samples(sample_rate: int) -> int:
    return 1152 if sample_rate >= 32000 else 576  # MPEG-1 vs MPEG-2/2.5 layer III


def _max_mp3_samples(max_bytes: int, sample_rate: int, bitrate: int) -> int:
    """How many output samples fit in ``max_bytes`` of CBR mp3, leaving headroom for container overhead."""
    frame_samples = _mp3_frame_samples(sample_rate)
    frame_bytes = math.ceil(frame_samples / 8 * bitrate / sample_rate) + 1  # +1: padding slot
    frames = (max_bytes - _MP3_HEADROOM_BYTES) // frame_bytes - _MP3_HEADROOM_FRAMES
    return max(0, frames * frame_samples)


def _encode_mp3(
    data: bytes, *, sample_rate: int, bitrate: int, max_out_samples: int
) -> tuple[bytes, int, int, int, str]:
    """Encode; returns (mp3, input samples kept, input samples total, input rate, input codec)."""
    container, stream = _open_input(data)
    codec = _codec_name(stream)
    buf = io.BytesIO()
    try:
        out = av.open(buf, mode="w", format="mp3", options={"id3v2_version": "0"})
        try:
            ost = out.add_stream("libmp3lame", rate=sample_rate, options={"compression_level": _LAME_FASTEST})
            ost.layout = "mono"
            ost.bit_rate = bitrate
            in_rate = max_in = kept = total = 0
            for frame in _decoded_frames(container, stream):
                if not in_rate:
                    in_rate = frame.sample_rate or int(stream.codec_context.sample_rate)
                    max_in = int(max_out_samples * in_rate / sample_rate)
                total += frame.samples
                if kept >= max_in:
                    continue  # past the cut: only count the source length
                room = max_in - kept
                if frame.samples > room:
                    frame = _head(frame, room)
                kept += frame.samples
                frame.pts = None  # let the encoder's own resampler keep time in output samples
                for packet in ost.encode(frame):
                    out.mux(packet)
            if total == 0:
                raise AudioError(f"no audio samples decoded from {codec} data")
            for packet in ost.encode(None):
                out.mux(packet)
        finally:
            out.close()
    except av.FFmpegError as exc:
        raise AudioError(f"cannot encode mp3 from {codec} audio: {exc}") from exc
    finally:
        container.close()
    return buf.getvalue(), kept, total, in_rate, codec


def transcode_to_mp3(
    data: bytes, *, max_bytes: int = 1_000_000, sample_rate: int = 16000, bitrate: int = 32000
) -> Transcoded:
    """Turn a WeChat voice clip into CBR mono mp3 at ``sample_rate`` that is at most ``max_bytes`` long.

    WeChat's recognizer rejects anything else (40010 for size). A clip too long for ``max_bytes`` is cut
    at the longest duration that fits; ``trimmed`` is then True and a warning is logged on "bot.audio".
    Raises :class:`AudioError` for audio that cannot be decoded.
    """
    frame_samples = _mp3_frame_samples(sample_rate)
    max_out = _max_mp3_samples(max_bytes, sample_rate, bitrate)
    for _ in range(3):  # the headroom makes a second pass practically never needed
        if max_out <= 0:
            raise AudioError(f"max_bytes={max_bytes} is too small for any mp3 at {bitrate} bit/s")
        mp3, kept, total, in_rate, codec = _encode_mp3(
            data, sample_rate=sample_rate, bitrate=bitrate, max_out_samples=max_out)
        if len(mp3) <= max_bytes:
            break
        over_frames = math.ceil((len(mp3) - max_bytes) * 8 * sample_rate / (frame_samples * bitrate)) + 2
        max_out -= over_frames * frame_samples
    else:
        raise AudioError(f"cannot fit mp3 into max_bytes={max_bytes}")
    source_s, duration_s = total / in_rate, kept / in_rate
    if kept < total:
        log.warning("voice trimmed from %.2f s to %.2f s to fit max_bytes=%d (%d kbit/s mp3)",
                    source_s, duration_s, max_bytes, bitrate // 1000)
    return Transcoded(data=mp3, duration_s=duration_s, input_codec=codec, trimmed=kept < total,
                      source_duration_s=source_s)
