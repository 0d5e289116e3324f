"""The CITab model: configuration and presets, assembly (`build_model`), the pretraining
objective and the momentum encoders."""
