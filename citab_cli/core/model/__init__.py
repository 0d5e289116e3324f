"""The CITab model: configuration, batch format and assembly (`build_model`)."""
