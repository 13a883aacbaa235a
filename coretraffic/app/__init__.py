"""Assembly: settings in, the parts of the loop made and started.

`wiring` builds what `run` and the one-shot commands share (the renderer, the admin address), `service` runs the
driver, `demo` runs it on demo routes, `parallel` spreads cold validation over the cores for one-shot commands.
"""
