"""Fine-tuning SAM 2 on the data engine's masklets (Meta's ``training`` package, driven in-process).

- ``clips``: ``Clip`` (frames + per-object masks) -> Meta's ``BatchedVideoDatapoint``;
- ``model``: ``SAM2Train`` via ``segmentation.sam2_model`` with Meta's prompt simulation, atomic saving;
- ``loss``: Meta's ``MultiStepMultiMasksAndIous`` with its fine-tuning weights;
- ``loop``: ``FineTuneConfig``, ``fine_tune``, ``FineTuneResult``;
- ``evaluate``: ``clip_iou``, the inference predictor's IoU on a clip (what fine-tuning should raise).
"""
