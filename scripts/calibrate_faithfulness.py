"""The measurement behind affect_llm.metrics.faithfulness's thresholds (LEXICAL_MIN_SHARE, SIMILARITY_THRESHOLD):
sentences about their own cue vs the same sentences pointed at another cue of the same kind.

    .venv/bin/python scripts/calibrate_faithfulness.py [--out res.json]

Prints the tables quoted in the module docstring (cues made with the project's own code from MELD dev
utterances and sampled prosody/face measurements; silver and hand-written paraphrase sentences). Loads MiniLM."""
import csv
import json
import random
import sys
from pathlib import Path

import numpy as np

import sys as _sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's affect_llm, whatever is installed

from affect_llm.cues import face, prosody
from affect_llm.evidence import Evidence
from affect_llm.training.silver import silver_explanation
from affect_llm.metrics import faithfulness as F
from affect_llm.types import Cue, Modality

rng = random.Random(0)
LABELS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]

# --- T cues: MELD dev utterances; hand paraphrases for 16 of them ------------------------------------------
T_PARA = {
    "I will, I will find him.": "In [T1] the speaker promises to track the man down.",
    "Okay, okay. It’s James Brolin. James Brolin is the father of my baby.": "In [T1] the speaker reveals who fathered the child.",
    "What-what are you doing?! Are you—Okay that’s not funny! Just stop horsing around!": "In [T1] the speaker demands an end to the joking.",
    "Come on little Chandler, it's time to be born. Come on little Chandler! Come on!": "In [T1] the speaker urges the newborn to arrive.",
    "Unbelievable! I mean you really kept Joey's underwear?! Why? Why would you do that?!": "In [T1] the speaker cannot accept that someone saved another man's briefs.",
    "Hi.  Umm, I think there’s something that we really need to talk about.": "In [T1] the speaker wants to raise a serious topic.",
    "Hey! What did you decide to do about the movie?": "In [T1] the speaker asks about the choice regarding the film.",
    "We’re gonna give it another try.": "In [T1] the speaker announces that the couple will attempt it once more.",
    "Joe! I’m glad I found ya, I got an audition for ya!": "In [T1] the speaker brings news of a casting opportunity.",
    "I already had a baby. Leave me alone.": "In [T1] the speaker tells the other person to go away since the child is already born.",
    "Because he’ll know what to do?  Oh my God, you’re a genius!": "In [T1] the speaker praises the listener's brilliant idea.",
    "It makes him miss the bowl, but whatever.": "In [T1] the speaker complains about poor aim at the toilet.",
    "I mean we’re not, we’re not gonna live together anymore?": "In [T1] the speaker asks whether they will stop sharing an apartment.",
    "What is going on with you? Since when are you so crazy about babies?": "In [T1] the speaker questions a sudden obsession with infants.",
    "Okay, get ready to see some beggin’!": "In [T1] the speaker announces a display of pleading.",
    "Hello! I'm in the front seat, okay? I'm Gary's partner!": "In [T1] the speaker insists on riding up front as the detective's colleague.",
    "Of course not, it smells like wine, which you spilled! And thanks for wrecking my sheet by the way.": "In [T1] the speaker blames the listener for staining the bedding with alcohol.",
    "What do they put something in the water in this place?": "In [T1] the speaker wonders aloud whether the local drinks are drugged.",
    "Look, we’ve always talked about having babies someday.": "In [T1] the speaker reminds the partner of their long-held plan to start a family.",
    "Not one that can pee on the roof.": "In [T1] the speaker rejects a pet that would urinate on top of the house.",
    "Wendy, we had a deal!  Yeah, you promised! Wendy! Wendy! Wendy!": "In [T1] the speaker keeps calling the girl back, reminding her of an agreement she broke.",
    "Come on, you saw the way he ran out of here!": "In [T1] the speaker points out that the man fled in a hurry.",
    "Yeah.  What d'you wanna do tonight?": "In [T1] the speaker asks about evening plans.",
    "Oh, I was kinda hoping that was it.": "In [T1] the speaker admits wishing it were over.",
    "Listen, the number that you gave me 853-5…   That is their old number!": "In [T1] the speaker complains that the phone contact provided is outdated.",
    "Oh, let's not tell this story.": "In [T1] the speaker asks to skip the anecdote.",
    "Thank you.  Oh Joey and look at this crib! It’s so cute!": "In [T1] the speaker admires the adorable cot for the infant.",
    "We should defiantly play football more often. Maybe there’s a like league we could join or something.": "In [T1] the speaker proposes joining a team to do the sport regularly.",
    "What?! Wait-wait-wait! The handsome man was about to enter!!": "In [T1] the speaker protests that the attractive guy was just arriving.",
    "Are you sure he didn't break it because it really hurts?": "In [T1] the speaker questions whether the bone is intact given the pain.",
    "I guess I set up the video camera to try and entice Joey.": "In [T1] the speaker confesses to arranging a recording device to lure a friend.",
    "I know, And then all of the sudden your Mom pops into your head.": "In [T1] the speaker describes a mother unexpectedly coming to mind.",
}
rows = list(csv.DictReader(open(Path(__file__).resolve().parents[2] / "shared" / "data" / "meld" / "dev_sent_emo.csv", encoding="utf-8")))
pool = [r["Utterance"] for r in rows if 4 <= len(r["Utterance"].split()) <= 25 and r["Utterance"] not in T_PARA]
utts = list(T_PARA) + rng.sample(pool, 48)

# --- P cues: prosody.describe on sampled measurements of 4 profiles ----------------------------------------
P_PROFILES = {
    "excited": dict(pitch=(3.2, 6), rng=(8.5, 12), loud=(6.5, 9), ratio=(1.45, 1.7), final=None,
                    para=["[P1] They sound keyed up, almost shouting and rushing through the sentence.",
                          "[P1] The delivery is shrill, forceful and hurried."]),
    "subdued": dict(pitch=(-5.5, -3.2), rng=(1.0, 2.5), loud=(-9, -6.5), ratio=(0.55, 0.68), final=None,
                    para=["[P1] They murmur flatly and drag out each syllable.",
                          "[P1] The delivery is quiet, dull and unhurried."]),
    "plain": dict(pitch=(-0.6, 0.6), rng=(4, 7), loud=(-1.5, 1.5), ratio=(0.95, 1.08), final=None,
                  para=["[P1] An ordinary, steady delivery with nothing unusual.",
                        "[P1] Nothing stands out in how it is delivered."]),
    "sharp": dict(pitch=(1.5, 2.5), rng=(5, 7.5), loud=(3.5, 5.5), ratio=(1.17, 1.35), final=-8,
                  para=["[P1] They are nearly yelling, with an abrupt drop at the close.",
                        "[P1] The delivery is clipped and forceful, coming down hard at the close."]),
}


def p_cue(profile: str, i: int) -> Cue:
    d = P_PROFILES[profile]
    u = lambda a: rng.uniform(*a)  # noqa: E731
    rate = 2.6 * u(d["ratio"])
    sp = prosody.SegmentProsody(start=0.0, end=2.0, f0_median_hz=180.0, pitch_st=u(d["pitch"]), pitch_range_st=u(d["rng"]),
                                pitch_slope_st_s=rng.uniform(-1.5, 1.5), final_slope_st_s=d["final"],
                                loudness_db=u(d["loud"]), intensity_db=65.0, rate_wps=rate, rate_ratio=u(d["ratio"]),
                                pause_before_s=0.0, pauses=rng.choice([0, 0, 1]), pause_total_s=round(rng.uniform(0.3, 1.2), 1), voiced_fraction=0.7)
    return Cue(id="P1", modality=Modality.prosody, start=0.0, end=2.0, text=prosody.describe(sp, True))


# --- F cues: face.describe on sampled AUs of 5 profiles -----------------------------------------------------
F_PROFILES = {
    "smile": dict(aus={"AU12": (3, 4.2), "AU6": (2, 3), "AU25": (1, 2)}, expr="happy",
                  para=["[F1] A broad grin lights up the whole look.", "[F1] They beam warmly."]),
    "frown": dict(aus={"AU4": (2.5, 3.6), "AU7": (1.5, 2.5), "AU17": (1, 1.8)}, expr="angry",
                  para=["[F1] A scowl darkens the forehead.", "[F1] They glare with a hard stare."]),
    "startle": dict(aus={"AU1": (2.5, 3.5), "AU2": (2.5, 3.5), "AU5": (2, 3), "AU26": (2, 3)}, expr="surprise",
                    para=["[F1] Wide-eyed, mouth agape.", "[F1] The eyes pop wide open."]),
    "downcast": dict(aus={"AU15": (2, 3), "AU1": (1.5, 2.5), "AU17": (1, 2)}, expr="sad",
                     para=["[F1] The mouth droops at the ends, a crumpled look.", "[F1] A pained, wilting look."]),
    "blank": dict(aus={}, expr="neutral", para=["[F1] A blank, still look with nothing moving.",
                                                "[F1] An impassive, motionless look."]),
}


def f_cue(profile: str, i: int) -> Cue:
    d = F_PROFILES[profile]
    aus = {a: rng.uniform(0, 0.6) for a in face.AU_NAMES}
    for a, (lo, hi) in d["aus"].items():
        aus[a] = rng.uniform(lo, hi)
    top = rng.uniform(0.45, 0.9)
    rest = [e for e in face.EXPRESSIONS if e != d["expr"]]
    w = np.array([rng.random() for _ in rest])
    expr = {d["expr"]: top, **{e: float(x) for e, x in zip(rest, (1 - top) * w / w.sum())}}
    text = face.describe(aus, expr)
    if rng.random() < 0.5:
        text = f"main face (the only face; its mouth moved during speech, visible in {rng.randint(70, 100)}% of frames): {text}"
    return Cue(id="F1", modality=Modality.face, start=0.0, end=2.0, text=text)


def d_cue() -> tuple[Cue, str]:
    w = np.array([rng.random() ** 3 for _ in LABELS])
    w /= w.sum()
    dist = {k: round(float(v), 4) for k, v in zip(LABELS, w)}
    top = sorted(dist.items(), key=lambda kv: -kv[1])[:3]
    n = rng.randint(0, 8)
    where = f"over {n} earlier utterances" if n else "on the utterance alone (no dialogue given)"
    cue = Cue(id="D1", modality=Modality.context, value=dist, text=f"context model {where}: " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    return cue, top[0][0]


D_PARA = ["[D1] The preceding lines of the scene lean the same way.", "[D1] What was said before in the scene backs this up."]

examples = []
for i, u in enumerate(utts):
    pp = rng.choice(list(P_PROFILES))
    fp = rng.choice(list(F_PROFILES))
    t = Cue(id="T1", modality=Modality.text, text=f'"{u}"')
    p, f = p_cue(pp, i), f_cue(fp, i)
    d, top = d_cue()
    examples.append(dict(T1=t, P1=p, F1=f, D1=d, pp=pp, fp=fp, top=top, label=top))

# --- sentences: silver (their own cue) and paraphrases ---------------------------------------------------------
items = []  # (group, sentence, cue_id, example index)
for k, ex in enumerate(examples):
    ev = Evidence.build([ex["T1"], ex["P1"], ex["F1"], ex["D1"]])
    for s in F.split_sentences(silver_explanation(ev, ex["label"], max_other=2)):
        ids = [i for i in ["T1", "P1", "F1", "D1"] if f"[{i}]" in s]
        if len(ids) == 1:
            items.append(("silver", s, ids[0], k))
    u = ex["T1"].text.strip('"')
    if u in T_PARA:
        items.append(("para", T_PARA[u], "T1", k))
    if k < 40:
        items.append(("para", rng.choice(P_PROFILES[ex["pp"]]["para"]), "P1", k))
        items.append(("para", rng.choice(F_PROFILES[ex["fp"]]["para"]), "F1", k))
    if k < 20:
        items.append(("para", rng.choice(D_PARA), "D1", k))


def other(k: int, cid: str) -> int:
    """An example whose cue of this kind is really different (another profile / utterance / top label)."""
    ex = examples[k]
    while True:
        j = rng.randrange(len(examples))
        if j == k:
            continue
        o = examples[j]
        if cid == "P1" and (o["pp"] == ex["pp"] or {o["pp"], ex["pp"]} == {"excited", "sharp"}):
            continue  # same profile, or the same directions in other degrees
        if cid == "F1" and (o["fp"] == ex["fp"] or {o["fp"], ex["fp"]} in ({"frown", "downcast"}, {"startle", "downcast"})):
            continue  # same profile, or profiles that share an AU
        if cid == "D1" and o["top"] == ex["top"]:
            continue
        return j


pairs = []  # (group, sentence, cue text, modality)
for g, s, cid, k in items:
    pairs.append((g, s, examples[k][cid].text, cid))
    j = other(k, cid)
    pairs.append(("mismatch-" + g, s, examples[j][cid].text, cid))
    cross = rng.choice([c for c in ["T1", "P1", "F1", "D1"] if c != cid])
    pairs.append(("cross-" + g, s, examples[j][cross].text, cid))

for g, s_, cid, k in items:
    if cid == "T1":
        for j in range(len(examples)):
            if j != k:
                pairs.append(("allT-" + g, s_, examples[j]["T1"].text, cid))
sims = F.similarity_table([(F._strip_ids(s), t) for _, s, t, _ in pairs])
res = []
for g, s, t, cid in pairs:
    cue = Cue(id=cid, modality={"T1": "text", "P1": "prosody", "F1": "face", "D1": "context"}[cid], text=t)
    chk = F.check_sentences(s, [cue])
    claim = [c for c in chk if c.kind == "claim"]
    lex = any(c.by in ("quote", "overlap") for c in claim)
    by = [c.by for c in claim]
    res.append(dict(g=g, s=s, t=t, m=cid, lex=lex, cos=sims[(F._strip_ids(s), t)]))

groups = sorted({r["g"] for r in res})
print(f"{len(examples)} examples, {len(pairs)} pairs")
print(f"{'group':18} {'n':>4} {'lexical':>8} {'cos p10':>8} {'p50':>6} {'p90':>6}")
for g in groups:
    rs = [r for r in res if r["g"] == g]
    c = np.array([r["cos"] for r in rs])
    print(f"{g:18} {len(rs):4d} {np.mean([r['lex'] for r in rs]):8.2f} {np.percentile(c, 10):8.2f} {np.percentile(c, 50):6.2f} {np.percentile(c, 90):6.2f}")
for m in ["T1", "P1", "F1", "D1"]:
    for g in groups:
        rs = [r for r in res if r["g"] == g and r["m"] == m]
        if rs:
            c = np.array([r["cos"] for r in rs])
            print(f"  {m} {g:18} n={len(rs):3d} lex={np.mean([r['lex'] for r in rs]):.2f} cos p10={np.percentile(c, 10):.2f} p50={np.median(c):.2f} p90={np.percentile(c, 90):.2f}")

print("\nT cues: support rate of (lexical OR cos>=thr)")
tg = [g for g in groups if any(r["m"] == "T1" for r in res if r["g"] == g)]
print("thr   " + " ".join(f"{g:>16}" for g in tg))
for thr in np.arange(0.30, 0.62, 0.025):
    print(f"{thr:.3f} " + " ".join(f"{np.mean([r['lex'] or r['cos'] >= thr for r in res if r['g'] == g and r['m'] == 'T1']):16.3f}" for g in tg))
print("\nthreshold: support rate of (lexical OR cos>=thr) per group")
print("thr   " + " ".join(f"{g:>14}" for g in groups))
for thr in np.arange(0.3, 0.86, 0.05):
    print(f"{thr:.2f} " + " ".join(f"{np.mean([r['lex'] or r['cos'] >= thr for r in res if r['g'] == g]):14.2f}" for g in groups))

if "-v" in sys.argv:
    for r in res:
        if (r["g"].startswith("mismatch") and r["lex"]) or (r["g"] == "para" and r["lex"]) or (r["g"] == "silver" and not r["lex"]) or (r["g"] == "allT-para" and r["cos"] >= 0.35):
            print(r["g"], r["m"], "|", r["s"], "||", r["t"], "|", round(r["cos"], 2))
# the base SmolLM2's real explanations (adapters/reasoner-meld/eval.json) against their own utterance
ev = json.load(open("adapters/reasoner-meld/eval.json"))
byid = {f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}": r["Utterance"] for r in rows}
for e in ev["reasoners"]["base"]["examples"]:
    t1 = Cue(id="T1", modality=Modality.text, text=f'"{byid[e["id"]]}"')
    chk = F.check_sentences(e["text"], [t1], similarities=F.similarity_table([(F._strip_ids(x), t1.text) for x in F.split_sentences(e["text"]) if "T1" in x]))
    for c in chk:
        print("base-llm", c.kind, c.by, None if c.similarity is None else round(c.similarity, 2), "|", c.text, "||", t1.text)
if "--out" in sys.argv:
    json.dump(res, open(sys.argv[sys.argv.index("--out") + 1], "w"), indent=0)
