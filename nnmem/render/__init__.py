"""An estimate or a fit as text (:mod:`.text`), HTML (:mod:`.html`) or SVG (:mod:`.svg`)."""
