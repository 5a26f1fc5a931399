"""The pipeline: media -> cues -> evidence -> reasoner -> :class:`Analysis`. Front doors are thin layers on it."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import media, prompting
from .config import PipelineConfig, PipelineOptions, as_config
from .data import Dialogue, Utterance, as_dialogue
from .decision import VERBAL, Decision, decide
from .errors import InputError
from .evidence import Evidence
from .fusion import fusion_llm
from .loaded import LoadedModels, Timer
from .textnorm import normalize
from .types import Analysis, Cue, MediaInfo, Modality, Transcript

if TYPE_CHECKING:
    from .llm.reasoner import ExplainJob

#: digital silence: peak amplitude below this (about -80 dBFS) is not worth running ASR on
SILENCE_PEAK = 1e-4
MAX_TEXT_CHARS = 20_000


@dataclass
class Findings:
    """What the cue stages of one input have produced so far."""

    cues: list[Cue] = field(default_factory=list)
    missing: list[Modality] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    transcript: Transcript | None = None
    timeline: dict[str, list[dict]] = field(default_factory=dict)
    distributions: dict[str, dict[str, float]] = field(default_factory=dict)
    context_embedding: np.ndarray | None = None  # the analysed utterance's Broad Mamba embedding

    def note_missing(self, modalities: list[Modality], why: str) -> None:
        self.missing += modalities
        self.notes.append(why)


@dataclass
class Gathering:
    """One input after :meth:`Pipeline.gather`, everything before the LLM: what :meth:`Pipeline.reason` takes.
    ``gather`` and ``reason`` may run in different processes (the batch engines do)."""

    source: str  # "text", or the media path
    evidence: Evidence  # the cues with their ids (D1 included when the context model ran)
    findings: Findings  # what the stages produced beside the cues: distributions, the context embedding, …
    media: MediaInfo | None  # the probed media (None for text)
    dialogue: Dialogue | None  # the dialogue before the input, when one was given


#: how many configs' pipelines :func:`shared_pipeline` keeps (each holds its loaded models)
SHARED_PIPELINES = 2
_shared: dict[str, "Pipeline"] = {}
_shared_lock = threading.Lock()


def shared_pipeline(config: PipelineConfig | PipelineOptions | dict | None = None, **options) -> "Pipeline":
    """This process's pipeline for a config (built on first use; its models load once), kept by the config's
    value: equal configs share one pipeline whoever built them. The last :data:`SHARED_PIPELINES` configs used
    are kept. What :func:`affect_llm.analyze` and the LangChain runnable use."""
    cfg = as_config(config, **options)
    key = cfg.key()
    with _shared_lock:
        pipe = _shared.pop(key, None) or Pipeline(cfg)
        _shared[key] = pipe  # the most recently used last
        while len(_shared) > SHARED_PIPELINES:
            del _shared[next(iter(_shared))]
    return pipe


class Pipeline:
    """Holds the loaded models (lazily) and runs the stages. Reuse one instance for many inputs."""

    def __init__(self, config: PipelineConfig | PipelineOptions | dict | None = None, **options):
        self.config = as_config(config, **options)
        self.models = LoadedModels(self.config)

    # -- the loaded models (affect_llm.loaded: lazy, once, thread-safe) ---------------------------------------
    def transcriber(self, timer: Timer | None = None):
        return self.models.transcriber(timer)

    def preload_reasoner(self) -> None:
        """Start loading the LLM in the background (it overlaps decoding and ASR, which run in native code)."""
        self.models.preload_reasoner()

    def reasoner(self, timer: Timer | None = None):
        return self.models.reasoner(timer)

    def context_model(self, timer: Timer | None = None):
        """The conversation-context model, or None when ``config.context.model`` is None."""
        return self.models.context_model(timer)

    def fusion(self):
        """The fitted probability fusion, or None (see :meth:`LoadedModels.fusion`)."""
        return self.models.fusion()

    def scene_matcher(self):
        """The CLIP matcher, or None when no CLIP weights are configured."""
        return self.models.scene_matcher()

    # -- cues -------------------------------------------------------------------------------------------
    def dialogue_context(self, context: Dialogue | str | Path | None) -> Dialogue | None:
        """``context`` as a :class:`Dialogue` (:func:`affect_llm.data.as_dialogue`)."""
        return as_dialogue(context)

    def _context_cue(
        self, dialogue: Dialogue | None, words: str, speaker: str | None, found: Findings, timer: Timer
    ) -> Cue | str | None:
        """Run the context model over the dialogue with the analysed utterance last: cue D1 (its distribution goes
        into ``found``), a note saying why it did not run, or None when it is switched off."""
        if self.config.context.model is None or not self._uses(Modality.context):
            return None
        if not words.strip():
            return "dialogue context model skipped: no words to place in the dialogue"
        model = self.context_model(timer)
        opts = self.config.context
        earlier = (dialogue.utterances if dialogue else [])[-opts.max_utterances :]
        full = Dialogue(id="analysed", utterances=[*earlier, Utterance(speaker=speaker or opts.speaker, text=normalize(words))])
        with timer("context"):
            out = model.predict(full)
        dist = out.distribution(-1)
        found.distributions["context"] = dist
        found.context_embedding = out.embeddings[-1]
        top = sorted(dist.items(), key=lambda kv: -kv[1])[:3]
        where = f"over {len(earlier)} earlier utterances" if earlier else "on the utterance alone (no dialogue given)"
        return Cue(id="D1", modality=Modality.context, value=dist,
                   text=f"context model {where}: " + ", ".join(f"{k} {v:.2f}" for k, v in top))  # fmt: skip

    def media_findings(self, path: str | Path, timer: Timer) -> tuple["Findings", MediaInfo]:
        """Decode ``path`` and extract every cue we can; what cannot be had goes in ``missing`` with a note."""
        media_opts = self.config.media
        with timer("probe"):
            info = media.probe(path, media_opts.max_duration)
        found = Findings()
        audio = self._decode_audio(path, found, timer) if info.has_audio else None
        if not info.has_audio:
            found.note_missing([Modality.speech, Modality.prosody], "no audio stream: no speech or voice cues")
        video = None
        if audio is not None or info.has_video:
            # the file is usable: load the LLM in the background while the cue models run (not earlier -- a bad
            # file must fail fast without importing torch; and not during the audio decode, which it would slow)
            self.preload_reasoner()
        if info.has_video:
            video = self._start_video(path, found, timer)
        else:
            found.note_missing([Modality.face, Modality.scene], "no video stream: no face or scene cues")
        try:
            if audio is not None:
                self._speech_cues(audio, found, timer)
        finally:
            if video is not None:
                wait([video])  # never leave the thread running behind an error; its own error surfaces below
        self._video_cues(video, found)
        return found, info

    def _decode_audio(self, path: str | Path, found: "Findings", timer: Timer) -> media.Audio | None:
        """The audio track, or None (with a note) when it is silent."""
        media_opts = self.config.media
        with timer("decode_audio"):
            audio = media.load_audio(path, media_opts.sample_rate, media_opts.max_duration)
        found.notes += audio.warnings
        if audio.samples.size == 0 or float(np.max(np.abs(audio.samples))) < SILENCE_PEAK:
            found.transcript = Transcript(text="")
            found.note_missing([Modality.speech, Modality.prosody], "the audio track is silent")
            return None
        return audio

    def _speech_cues(self, audio: media.Audio, found: "Findings", timer: Timer) -> None:
        from .cues import prosody, speech

        asr = self.transcriber(timer)
        with timer("asr"):
            found.transcript = asr.transcribe(audio.samples)
        if not found.transcript.segments:
            found.note_missing([Modality.speech, Modality.prosody], "no speech detected in the audio")
            return
        found.cues += speech.speech_cues(found.transcript)
        with timer("prosody"):
            track = prosody.extract_track(audio, self.config.prosody)
            found.cues += prosody.prosody_cues(prosody.measure(audio, found.transcript, self.config.prosody, track))
            found.timeline["prosody"] = prosody.track_timeline(track)

    def _start_video(self, path: str | Path, found: "Findings", timer: Timer) -> Future | None:
        """Face detection and CLIP matching over one pass of decoded frames, in a thread: neither needs the
        transcript, and MediaPipe, CTranslate2 and torch all release the GIL, so this overlaps ASR."""
        face_opts = self.config.face
        with timer("load_clip"):
            matcher = self.scene_matcher()
        if matcher is None:
            from .cues.clip import NO_MODEL_NOTE

            found.note_missing([Modality.scene], NO_MODEL_NOTE)
        if not face_opts.enabled:
            found.note_missing([Modality.face], "face analysis is turned off")
        if matcher is None and not face_opts.enabled:
            return None
        pool = ThreadPoolExecutor(1, thread_name_prefix="video")
        future = pool.submit(self._video_models, path, matcher, timer)
        pool.shutdown(wait=False)
        return future

    def _video_models(self, path: str | Path, matcher, timer: Timer):
        from .cues import face as face_stage

        face_opts, scene_opts = self.config.face, self.config.scene
        fps = max(face_opts.fps if face_opts.enabled else 0.0, scene_opts.fps if matcher is not None else 0.0)
        scene_frames: list[media.Frame] = []
        next_scene_t = 0.0
        problems: list[str] = []  # this thread's own notes, joined into the analysis in _video_cues

        def frames():  # one decoding pass; CLIP keeps every frame due at its own (lower) rate
            nonlocal next_scene_t
            for f in media.iter_frames(path, fps=fps, max_side=face_opts.max_side,
                                       max_duration=self.config.media.max_duration,
                                       warnings=problems):  # fmt: skip
                if matcher is not None and f.t + 1e-6 >= next_scene_t:
                    scene_frames.append(f)
                    next_scene_t = f.t + 1.0 / scene_opts.fps
                yield f

        detections = None
        if face_opts.enabled:
            with timer("face"):
                detections = face_stage.detect_faces(frames(), face_opts)
        else:
            with timer("decode_video"):
                for _ in frames():
                    pass
        scene = None
        if matcher is not None:
            with timer("scene"):
                scene = matcher.match(scene_frames)
        return detections, scene, problems

    def _video_cues(self, pending: Future | None, found: "Findings") -> None:
        """Join the video thread; turn its detections into F- and C-cues aligned to the transcript."""
        if pending is None:
            return
        from .cues import clip as clip_stage
        from .cues import face as face_stage

        detections, scene, problems = pending.result()  # re-raises a decoding error here
        found.notes += problems
        spans = [(s.start, s.end) for s in found.transcript.segments] if found.transcript else []
        if detections is not None:
            face_opts = self.config.face
            track = face_stage.build_track(detections.per_frame, detections.times, face_opts, spans or None,
                                           detections.models)  # fmt: skip
            found.cues += face_stage.face_cues(track, spans or None)
            found.timeline["face"] = face_stage.timeline(track)
            if not track.face_found:
                found.note_missing([Modality.face], "no face visible in the video")
            else:
                labels = self.config.reasoner.labels
                dist = face_stage.label_distribution(track, labels)
                if dist:
                    found.distributions["face"] = dist
                facs = face_stage.facs_distribution(track, labels)
                if facs:
                    found.distributions["facs"] = facs
        if scene is not None:
            if scene.mean is None:
                found.note_missing([Modality.scene], "no frames could be decoded for CLIP")
            else:
                found.cues += clip_stage.scene_cues(scene, spans or None)
                found.distributions["scene"] = scene.distribution

    @staticmethod
    def text_findings(text: str) -> "Findings":
        """A text input: its words as cue T1 (normalised; empty or over :data:`MAX_TEXT_CHARS` is an error)."""
        text = normalize(text)
        if not text:
            raise InputError("empty text")
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"text of {len(text)} characters is longer than the limit of {MAX_TEXT_CHARS}")
        return Findings(cues=[Cue(id="T1", modality=Modality.text, text=f'"{text}"')], notes=["text input"],
                        transcript=Transcript(text=text))  # fmt: skip

    @staticmethod
    def text_evidence(text: str) -> Evidence:
        """The evidence of a text input alone (no dialogue model)."""
        found = Pipeline.text_findings(text)
        return Evidence.build(found.cues, found.missing, found.notes)

    # -- the whole flow ---------------------------------------------------------------------------------
    def gather(
        self,
        source: str | Path | None = None,
        *,
        text: str | None = None,
        context: Dialogue | str | Path | None = None,
        speaker: str | None = None,
        timer: Timer | None = None,
    ) -> Gathering:
        """Everything before the LLM: the evidence (cues, with the dialogue cue D1 when the context model runs),
        what the stages found (distributions, the context embedding), the media's description and the dialogue
        context. :meth:`reason` reasons over it; training the reasoner builds its examples from it."""
        if (source is None) == (text is None):
            raise InputError("give exactly one of a media path or text")
        timer = timer or Timer()
        dialogue = self.dialogue_context(context)
        found, info = (self.text_findings(text), None) if text is not None else self.media_findings(source, timer)
        words = found.transcript.text if found.transcript else ""
        ctx = self._context_cue(dialogue, words, speaker, found, timer)
        if isinstance(ctx, Cue):
            found.cues.append(ctx)
        elif ctx:
            found.notes.append(ctx)
        if self.config.modalities is not None:
            self._only_chosen(found)
        evidence = Evidence.build(found.cues, found.missing, found.notes)  # once, from everything found
        return Gathering("text" if text is not None else str(source), evidence, found, info, dialogue)

    def _uses(self, modality: Modality) -> bool:
        return self.config.modalities is None or modality in self.config.modalities

    def _only_chosen(self, found: Findings) -> None:
        """Drop the cues and distributions of the modalities left out of ``config.modalities`` (with a note)."""
        keep = [c for c in found.cues if self._uses(c.modality)]
        dropped = sorted({c.modality.value for c in found.cues} - {c.modality.value for c in keep})
        found.cues = keep
        for name in list(found.distributions):
            modality = Modality.face if name == "facs" else Modality(name) if name in ("face", "scene", "context") else None
            if modality is not None and not self._uses(modality):
                del found.distributions[name]
        if dropped:
            found.notes.append("left out by the modality selection: " + ", ".join(dropped))

    def analyze(
        self,
        source: str | Path | None = None,
        *,
        text: str | None = None,
        context: Dialogue | str | Path | None = None,
        speaker: str | None = None,
        explain: bool | None = None,
    ) -> Analysis:
        """Analyse a media file (``source``) or a text (``text=``). ``context``: the dialogue before it (a
        :class:`~affect_llm.data.Dialogue`, a JSONL/CSV file, or ``Speaker: text`` lines); the input is its last
        utterance, spoken by ``speaker`` (default ``config.context.speaker``)."""
        timer = Timer()
        t0 = time.perf_counter()
        gathering = self.gather(source, text=text, context=context, speaker=speaker, timer=timer)
        return self.reason(gathering, explain=explain, timer=timer, started=t0)

    def analyze_many(self, inputs: list[dict | Exception]) -> list[Analysis | Exception]:
        """:meth:`analyze` for many inputs together: each one's cues, then :meth:`reason_many` over those that
        gathered (the explanations in one batched generation). ``inputs``: dicts of :meth:`analyze`'s arguments
        (``source`` or ``text``, ``context``, ``speaker``, ``explain``); an entry that is already an exception
        stays one. The result has each input's :class:`Analysis`, or its exception, in its place."""
        out: list[Analysis | Exception | None] = [None] * len(inputs)
        ready, where, flags, timers, starts, told = [], [], [], [], [], []
        for k, x in enumerate(inputs):
            if isinstance(x, Exception):
                out[k] = x
                continue
            timer, t0 = Timer(), time.perf_counter()
            try:
                source = x.get("source")
                g = self.gather(source, text=x.get("text"), context=x.get("context"), speaker=x.get("speaker"),
                                timer=timer)  # fmt: skip
            except Exception as e:  # a bad input is its own error; the others go on
                out[k] = e
                continue
            ready.append(g)
            where.append(k)
            flags.append(x.get("explain"))
            told.append(x.get("explain_label"))
            timers.append(timer)
            starts.append(t0)
        if ready:
            try:
                results = self.reason_many(ready, explain=flags, timers=timers, started=starts, explain_labels=told)
            except Exception as e:
                results = [e] * len(ready)
            for k, r in zip(where, results):
                out[k] = r
        return out  # type: ignore[return-value]

    def reason(
        self,
        gathering: Gathering,
        *,
        explain: bool | None = None,
        timer: Timer | None = None,
        started: float | None = None,
    ) -> Analysis:
        """Everything after :meth:`gather`: the LLM's label scores, the fusion, the explanation, the
        :class:`Analysis`. ``gather`` and ``reason`` may run in different processes (the batch engines do)."""
        out = self.reason_many([gathering], explain=[explain], timers=[timer or Timer()],
                               started=[started if started is not None else time.perf_counter()])[0]  # fmt: skip
        if isinstance(out, Exception):
            raise out
        return out

    def reason_many(
        self, gathered: list[Gathering], *, explain: list[bool] | bool | None = None, timers: list[Timer] | None = None,
        started: list[float] | None = None, explain_labels: list[str | None] | None = None,
    ) -> list[Analysis | Exception]:  # fmt: skip
        """:meth:`reason` for many inputs (each a :meth:`gather` result), the
        explanations in one batched generation. An input that fails gets its exception in its place; the others
        go on. Each explained input's ``explain`` timing is its share of the batch's generation time.
        ``explain_labels``: per input, a label to explain instead of the decided one (rationale mode: a dataset's
        gold label; the decision itself is unchanged), or None."""
        n = len(gathered)
        flags = [explain] * n if not isinstance(explain, list) else explain
        flags = [self.config.reasoner.explain if f is None else f for f in flags]
        timers = timers or [Timer() for _ in range(n)]
        started = started or [time.perf_counter()] * n
        def decide_one(args) -> "Decided | Exception":
            try:
                return self.decide(*args)
            except Exception as e:
                return e

        jobs = list(zip(gathered, timers, started))
        # a backend that serves several requests at once (a chat API) scores the labels of a batch concurrently
        width = 1
        if n > 1 and any(g.evidence.cues for g in gathered):
            try:
                width = int(getattr(self.reasoner(timers[0]).lm, "concurrency", 1))
            except Exception:  # noqa: BLE001 - each input's decide says why the reasoner is not there
                width = 1
        if width > 1:
            with ThreadPoolExecutor(min(width, n), thread_name_prefix="affect-llm-decide") as pool:
                decided: list[Decided | Exception] = list(pool.map(decide_one, jobs))
        else:
            decided = [decide_one(j) for j in jobs]
        labels = list(self.config.reasoner.labels)
        for d, told in zip(decided, explain_labels or [None] * n):
            if told and isinstance(d, Decided) and d.job is not None:
                if told in labels:
                    d.job = dataclasses.replace(d.job, label=told)
                    d.explained_label = told if told != d.label else None
                else:
                    d.evidence.notes.append(f"the label to explain, {told!r}, is not on the label set: the decided "
                                            "label is explained")  # fmt: skip
        todo = [d for d, f in zip(decided, flags) if isinstance(d, Decided) and f and d.job is not None]
        if todo:
            t0 = time.perf_counter()
            for d in todo:
                if d.timer.on_stage is not None:
                    d.timer.on_stage("explain", "start", None)
            try:
                for d, out in zip(todo, self.reasoner().explain_many([d.job for d in todo])):
                    d.explained = out
            except Exception as e:
                decided = [e if any(d is x for x in todo) else d for d in decided]
            share = round((time.perf_counter() - t0) / len(todo), 4)
            for d in todo:
                d.timer.timings["explain"] = share
                if d.timer.on_stage is not None:
                    d.timer.on_stage("explain", "failed" if d.explained is None else "done", share)
        return [d if isinstance(d, Exception) else self.finish(d, f) for d, f in zip(decided, flags)]

    def decide(self, g: Gathering, timer: Timer | None = None, started: float | None = None) -> "Decided":
        """The label stage of one gathered input: the LLM's label scores (when there are words), the fusion, the
        label and why; what the explanation will need (:attr:`Decided.job`). :meth:`reason` is this, then the
        explanation, then :meth:`finish`."""
        timer = timer or Timer()
        evidence, found, info, dialogue = g.evidence, g.findings, g.media, g.dialogue
        t0 = started if started is not None else time.perf_counter()
        reasoner_opts = self.config.reasoner
        models_used = {"llm": reasoner_opts.model}
        if info is not None and info.has_audio:
            models_used["asr"] = self.config.speech.model
        if "face" in found.timeline:
            models_used["face"] = self.config.face.landmarker
            if self.config.face.expression:
                models_used["expression"] = self.config.face.expression_model
        if "scene" in found.distributions:
            models_used["scene"] = str(self.config.scene.model)
        if "context" in found.distributions:
            models_used["context"] = str(self.config.context.model)

        evidence_text = evidence.render()
        llm_context = prompting.dialogue_text(dialogue)
        d = Decided(g.source, evidence, found, info, timer, t0, evidence_text, models_used)
        if not evidence.cues:
            labels = reasoner_opts.labels
            d.probs = {lab: 1.0 / len(labels) for lab in labels}
            d.label = "neutral" if "neutral" in labels else labels[0]
            d.distributions = dict(found.distributions)
            return d
        reasoner = self.reasoner(timer)
        models_used["llm"] = reasoner.identity()
        if reasoner.adapter is not None:
            models_used["adapter"] = str(reasoner.adapter.path)
        context_model = self.models.loaded_context_model
        soft = reasoner.soft_prompt(found.context_embedding, self.config.context.model,
                                    getattr(context_model, "fingerprint", None))  # fmt: skip
        if soft is None and reasoner.projector is not None and found.context_embedding is not None:
            evidence.notes.append("no soft prompt: the reasoner's projector reads another context model's "
                                  "embeddings")  # fmt: skip
        has_words = any(c.modality in (Modality.speech, Modality.text) for c in evidence.cues)
        d.distributions = dict(found.distributions)
        if has_words:  # the LLM was trained on words: on a wordless input its label scores are not evidence
            with timer("label"):
                dist, d.label_method = reasoner.label_result(evidence_text, llm_context, soft)
                d.distributions = {"llm": dist, **d.distributions}
        fusion = self.fusion()
        fitted_llm = fusion_llm(fusion)
        if (fusion is not None and "llm" in d.distributions and fusion.fitted.get("llm")
                and fitted_llm != reasoner.identity()):  # fmt: skip
            evidence.notes.append(f"not fused: the fusion was fitted on {fitted_llm}'s label scores, not "
                                  f"{reasoner.identity()}'s, whose distribution decides")  # fmt: skip
            fusion = None
        try:
            decision = decide(d.distributions, list(reasoner_opts.labels), has_words=has_words, fusion=fusion)
        except InputError as e:  # e.g. only distributions on another label set
            evidence.notes.append(f"no label decision from the distributions: {e}")
            decision = Decision("neutral" if "neutral" in reasoner_opts.labels else reasoner_opts.labels[0],
                                {lab: 1.0 / len(reasoner_opts.labels) for lab in reasoner_opts.labels}, reason=str(e))  # fmt: skip
        unfused = {m: why for m, why in decision.left_out.items() if m != "fusion" and (m not in VERBAL or has_words)}
        if "fusion" in decision.left_out:  # nothing matched the fusion's inputs (e.g. another dataset's label set)
            who = "the LLM" if decision.used == ("llm",) else f"the {'/'.join(decision.used)}"
            evidence.notes.append(f"not fused, {who}'s distribution decides: {decision.left_out['fusion']}")
        elif unfused:
            evidence.notes.append("not fused: " + "; ".join(f"{m} ({why})" for m, why in unfused.items()))
        d.probs, d.fusion_weights, d.label, d.decision = decision.probabilities, decision.weights, decision.label, decision.reason
        if reasoner_opts.open_vocab:
            with timer("open_vocab"):
                d.open_vocabulary = reasoner.open_vocabulary(evidence_text, llm_context)
        from .llm.reasoner import ExplainJob

        d.job = ExplainJob(evidence, d.label, evidence_text, soft, d.distributions)
        return d

    def finish(self, d: "Decided", explain: bool) -> Analysis:
        """The :class:`Analysis` of a decided input (with its explanation, when it was explained)."""
        evidence = d.evidence
        if not evidence.cues:
            explanation = "No usable evidence: " + "; ".join(evidence.notes) + "." if explain else ""
            cited: list[str] = []
            unknown: list[str] = []
            repairs: list[str] = []
        else:
            explanation, cited, unknown, repairs = d.explained if d.explained is not None else ("", [], [], [])
        d.timer.timings["total"] = round(time.perf_counter() - d.started, 4)
        return Analysis(
            source=d.name,
            label=d.label,
            probabilities=d.probs,
            distributions=d.distributions,
            fusion=d.fusion_weights,
            decision=d.decision,
            label_method=d.label_method,
            open_vocabulary=d.open_vocabulary,
            explained_label=d.explained_label if explain else None,
            explanation=explanation,
            cited_cues=cited,
            uncited_ids=unknown,
            transcript=d.found.transcript,
            cues=evidence.cues,
            evidence=d.evidence_text,
            missing_modalities=evidence.missing,
            notes=[*evidence.notes, *repairs],
            media=d.info,
            timeline=d.found.timeline,
            models=d.models_used,
            timings=d.timer.timings,
        )

    def chat(self, analysis: Analysis, history: list[tuple[str, str]], question: str) -> str:
        """Answer a question about an analysed clip; the evidence and analysis stay in context."""
        question = question.strip()
        if not question:
            raise InputError("empty question")
        return self.reasoner().chat(analysis, history, question)


@dataclass
class Decided:
    """An input between its label and its explanation (:meth:`Pipeline.decide`; then the reasoner explains
    ``job`` and :meth:`Pipeline.finish` makes the :class:`Analysis`)."""

    name: str
    evidence: Evidence
    found: Findings
    info: MediaInfo | None
    timer: Timer
    started: float
    evidence_text: str
    models_used: dict[str, str]
    label: str = ""
    probs: dict[str, float] = field(default_factory=dict)
    distributions: dict[str, dict[str, float]] = field(default_factory=dict)
    fusion_weights: dict[str, float] = field(default_factory=dict)
    decision: str = ""  # why the label is what it is (decision.Decision.reason)
    label_method: str | None = None  # how the LLM's distribution was obtained (Reasoner.label_result)
    explained_label: str | None = None  # the label explained instead of the decided one (reason_many)
    open_vocabulary: list[str] | None = None  # the LLM's free emotion words (ReasonerOptions.open_vocab)
    job: ExplainJob | None = None  # None: nothing for the LLM to explain (no evidence)
    explained: tuple | None = None  # llm.reasoner.Explained
