"""The offline data sets (:mod:`.data`) and the small models (:mod:`.digits`) that the compiler's tests and the
upper floors train; one place, so every floor and figure uses the same images and networks."""
