"""Named scoring profiles: how comparisons become scores (docs/method.md, "Profiles").

`paper` is the paper's method done right (probit link, exact MAP, plain softmax, latent score).
`official` reproduces the released code (logistic link, 100 seeded Adam steps, logits / 100 for
the test image, min-max 0-100 over anchors + test). Every field can be overridden; the resolved
profile is written to each run's manifest so a number always says how it was made.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from harness.core.options import check_fields
from harness.core.vocabulary import CALIBRATIONS, DEFAULT_ORDER, LINKS, MATRIX_SOURCES, SCALES, SOLVERS

#: the arithmetic of the soft preference: float32 (exact, max-subtracted) or the official code's float16
LOGIT_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class Profile:
    name: str
    link: str = "probit"
    #: temperature applied to the test-vs-anchor level logits
    temperature: float = 1.0
    #: temperature for the anchor-vs-anchor block; the official fixed matrix was evidently made at T = 1
    #: while test preferences use T = 100 (docs/method.md, "The official code and why it differs"), so the
    #: two are separate
    anchor_temperature: float = 1.0
    solver: str = "exact"
    steps: int = 100
    scale: str = "latent"
    prior_var: float = 1.0
    #: where the anchor block comes from: "auto" = for the official solver, the fixed matrix the anchor set
    #: carries ("official" for the paper's KonIQ anchors, "file" for the user's), else the comparator itself
    anchor_matrix: str = "auto"
    #: "float16" replays the official code's half-precision softmax and weighting; the default computes
    #: the preference exactly (docs/method.md, "The official code and why it differs")
    logit_dtype: str = "float32"
    #: "anchors" fits a temperature (and "anchors+bias" also a level bias) on the judged anchor block against
    #: the anchors' MOS-derived preferences and scores with it, replacing both temperatures (soft mode only)
    calibrate: str = "none"

    def __post_init__(self):
        # one declared type per setting: `temperature: "abc"` or `steps: true` (YAML overrides) stop here
        check_fields(self, f"profile {self.name!r}")
        checks = [("link", self.link, LINKS), ("solver", self.solver, SOLVERS),
                  ("scale", self.scale, SCALES), ("anchor_matrix", self.anchor_matrix, MATRIX_SOURCES),
                  ("logit_dtype", self.logit_dtype, LOGIT_DTYPES), ("calibrate", self.calibrate, CALIBRATIONS)]
        for field, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"profile {self.name!r}: {field} must be one of {allowed}, got {value!r}")
        for field in ("temperature", "anchor_temperature", "prior_var"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"profile {self.name!r}: {field} must be a finite number > 0, got {value!r}")
        if self.solver == "official-adam" and self.steps < 1:
            raise ValueError(f"profile {self.name!r}: steps must be >= 1")
        if self.solver == "official-adam" and self.scale != "minmax":
            raise ValueError(f"profile {self.name!r}: the official Adam solver only yields the min-max 0-100 scale")
        if self.calibrate != "none" and self.logit_dtype != "float32":
            raise ValueError(f"profile {self.name!r}: calibrate {self.calibrate!r} fits the exact preference; it cannot "
                             "be combined with logit_dtype float16 (the official code's half-precision softmax)")

    def as_dict(self) -> dict:
        """The settings as run ids, rescore digests and labels see them; `logit_dtype` only when it is not
        the default, so that runs made before the setting existed keep their ids (manifests record it always);
        `calibrate` likewise."""
        d = asdict(self)
        if d["logit_dtype"] == "float32":
            del d["logit_dtype"]
        if d["calibrate"] == "none":
            del d["calibrate"]
        return d


#: the profile a run uses unless told otherwise
DEFAULT_PROFILE = "paper"

PROFILES: dict[str, Profile] = {
    "paper": Profile("paper"),
    "official": Profile("official", link="logit", temperature=100.0, anchor_temperature=1.0,
                        solver="official-adam", steps=100, scale="minmax"),
}


def get_profile(name: str, **overrides) -> Profile:
    """A named profile with optional field overrides (None values are ignored)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - set(Profile.__dataclass_fields__) - {"name"}
    if unknown:
        raise ValueError(f"unknown profile setting(s) {sorted(unknown)}")
    return replace(PROFILES[name], **overrides)


def profile_label(profile: Profile, order: str = DEFAULT_ORDER) -> str:
    """The profile's name plus every setting that differs from that named profile's defaults (and a
    non-default presentation order), so runs with other settings never share a leaderboard row."""
    base = PROFILES.get(profile.name)
    diffs = [f"{k}={v}" for k, v in profile.as_dict().items()
             if k != "name" and (base is None or getattr(base, k) != v)]
    if order != DEFAULT_ORDER:
        diffs.append(f"order={order}")
    return profile.name + (f" [{', '.join(diffs)}]" if diffs else "")
