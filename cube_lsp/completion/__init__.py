"""Fill-in-the-middle completion: context, templates, post-processing and the engine that ties them."""
