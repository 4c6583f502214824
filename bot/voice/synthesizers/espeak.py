"""``espeak``: espeak-ng in-process, offline — Mandarin (``cmn``) for zh_CN, American English for en_US.

Needs the ``espeak`` extra (``pip install 'wechat-voicebot[espeak]'``): the ``espeakng-loader`` wheel carries
libespeak-ng and its voice data, so nothing comes from the system. The binding is these few lines of ctypes
over espeak-ng's C API (speak_lib.h), which has not changed in years. It sounds robotic but clear, takes a
few milliseconds per sentence and no network, which makes it the last resort after a cloud voice. espeak-ng
is GPL-3.0: the extra loads it into the bot's process, so check that suits how you distribute the bot.
"""
from __future__ import annotations

import ctypes
import threading
import time
from array import array
from typing import Any

from bot.voice.audio import encode_pcm
from bot.voice.synthesizers.base import SynthesisError

VOICES = {"zh_CN": "cmn", "en_US": "en-us"}
_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: synthesize into the callback, return when done
_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Engine:
    """libespeak-ng, loaded and initialized once per process; it has global state, so one call at a time."""

    _instance: _Engine | None = None
    _create = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader  # the optional extra

        self.lock = threading.Lock()
        self.lib = lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = lib.espeak_Initialize(_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if self.rate <= 0:
            raise OSError(f"espeak_Initialize failed ({self.rate})")
        self.samples = array("h")
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library calls it
        lib.espeak_SetSynthCallback(self._callback)
        self.voice: bytes | None = None

    @classmethod
    def get(cls) -> _Engine:
        with cls._create:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        if count > 0:
            self.samples.frombytes(ctypes.string_at(wav, count * 2))
        return 0  # 0: go on

    def speak(self, text: str, voice: str) -> array:
        with self.lock:
            if self.voice != voice.encode():
                if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise SynthesisError("unavailable", f"espeak-ng has no voice {voice!r}")
                self.voice = voice.encode()
            self.samples = array("h")
            data = text.encode("utf-8")
            status = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            if status != 0:
                raise SynthesisError("unavailable", f"espeak_Synth failed ({status})")
            return self.samples


class EspeakSynthesizer:
    name = "espeak"

    def __init__(self) -> None:
        try:
            self.engine = _Engine.get()
        except (ImportError, OSError) as exc:
            from bot.config import ConfigError
            from bot.config.extras import install_hint
            raise ConfigError(f"[voice.reply] synthesizers: 'espeak' needs the espeak extra: {install_hint('espeak')} "
                              f"({type(exc).__name__}: {exc})") from None

    def synthesize(self, text: str, lang: str, deadline: float) -> bytes:
        """WAV at espeak-ng's rate (22.05 kHz); the chain transcodes it like any synthesizer's audio."""
        if time.monotonic() >= deadline:
            raise SynthesisError("timeout", "no time left for espeak")
        samples = self.engine.speak(text, VOICES.get(lang, "cmn"))
        if not samples:
            raise SynthesisError("empty", "espeak-ng produced no audio")
        return encode_pcm(samples, self.engine.rate, fmt="wav")
