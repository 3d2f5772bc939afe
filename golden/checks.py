"""Input checks shared by the golden models: one rule for every argument.

- An integer argument (an array of operands, a size, a width, a count) takes whole
  numbers of any real type: Python or NumPy integers, and floats whose value is whole
  (``2.0`` is 2). A fraction, NaN or infinity is a ``ValueError``; a bool, a string,
  ``None``, a complex number or any other object is a ``TypeError``: a bool array is a
  mask, not numbers.
- A real argument (float weights, a scale, a sparsity) takes finite real numbers;
  integers beyond ``2^53`` in magnitude are refused, as a float cannot hold them exactly.
- A flag takes ``True`` or ``False`` only.

Every error is one line that names the argument, the value and what is allowed.
"""

import numbers

import numpy as np

__all__ = ["integer", "real", "flag", "integer_array", "real_array"]

_INT64 = (-(1 << 63), (1 << 63) - 1)
#: Largest integer magnitude a float64 holds exactly.
_EXACT_FLOAT = 1 << 53
_KINDS = {"U": "strings", "S": "bytes", "c": "complex numbers", "M": "datetimes",
          "m": "timedeltas", "V": "records"}


def _show(value):
    """A one-line ``repr`` of ``value``, shortened past 60 characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else f"{text[:57]}..."


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _scalar_number(name, value, allowed):
    """``value`` as a Python int or float; a bool or a non-number is a TypeError."""
    if _is_bool(value) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise TypeError(f"{name} must be {allowed}, not {_show(value)}")
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def integer(name, value, lo=None, hi=None):
    """``value`` as a Python int in ``lo..hi`` (either end may be open: None)."""
    allowed = ("an integer" if lo is None and hi is None else
               f"an integer of at least {lo}" if hi is None else
               f"an integer of at most {hi}" if lo is None else
               f"an integer between {lo} and {hi}")
    number = _scalar_number(name, value, allowed)
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(f"{name} must be {allowed}, not {_show(value)}")
    number = int(number)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        if lo is not None and hi is not None:
            raise ValueError(f"{name} must be between {lo} and {hi}, not {_show(value)}")
        raise ValueError(f"{name} must be {allowed}, not {_show(value)}")
    return number


def real(name, value):
    """``value`` as a finite Python float."""
    number = float(_scalar_number(name, value, "a real number"))
    if not np.isfinite(number):
        raise ValueError(f"{name} must be finite, not {_show(value)}")
    return number


def flag(name, value):
    """``value`` as a bool; only ``True`` and ``False`` (NumPy's too) are flags."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False, not {_show(value)}")
    return bool(value)


def _array(name, values, ndim):
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be a rectangular array, not a ragged "
                         f"{type(values).__name__}") from None
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, not of shape {array.shape}")
    kind = array.dtype.kind
    if kind == "b":
        raise TypeError(f"{name} must hold numbers, not booleans")
    if kind in _KINDS:
        raise TypeError(f"{name} must hold numbers, not {_KINDS[kind]}")
    if kind == "O":
        numbers_ = []
        for value in array.ravel().tolist():
            if _is_bool(value) or not isinstance(value, (numbers.Integral, numbers.Real)):
                raise TypeError(f"{name} must hold numbers, not {_show(value)}")
            numbers_.append(int(value) if isinstance(value, numbers.Integral) else float(value))
        if any(isinstance(value, float) for value in numbers_):
            for value in numbers_:
                if isinstance(value, float) and not np.isfinite(value):
                    raise ValueError(f"{name} must be finite, not {value!r}")
            return np.array(numbers_, dtype=object).reshape(array.shape), "float"
        return np.array(numbers_, dtype=object).reshape(array.shape), "int"
    return array, ("float" if kind == "f" else "int")


def _first(array, bad):
    value = array[bad].flat[0]
    return value.item() if isinstance(value, np.generic) else value


def integer_array(name, values, lo=None, hi=None, *, ndim=None, fits=None):
    """``values`` as an int64 array of whole numbers in ``lo..hi``.

    Parameters
    ----------
    name : str
        The argument, as the error names it.
    lo, hi : int, optional
        Smallest and largest value allowed; the int64 range by default.
    ndim : int, optional
        Dimensions the array must have.
    fits : str, optional
        What the range is, for the error: ``"{name} {value} does not fit {fits}"``;
        ``"(lo..hi)"`` by default.

    Raises
    ------
    TypeError
        The values are bools, strings or other non-numbers.
    ValueError
        The array is ragged or of the wrong dimensions, or a value is NaN, infinite, a
        fraction, or outside ``lo..hi``.
    """
    array, kind = _array(name, values, ndim)
    lo = _INT64[0] if lo is None else max(lo, _INT64[0])
    hi = _INT64[1] if hi is None else min(hi, _INT64[1])
    fits = f"({lo}..{hi})" if fits is None else fits
    if kind == "float" and array.dtype == object:
        # Python ints and floats, each converted on its own so that no int is rounded.
        flat = []
        for value in array.ravel().tolist():
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{name} must hold whole numbers, not {value!r}")
            flat.append(int(value))
        array = np.array(flat, dtype=object).reshape(array.shape)
    elif kind == "float":
        array = array.astype(np.float64)
        bad = ~np.isfinite(array)
        if bad.any():
            raise ValueError(f"{name} must be finite, not {_first(array, bad)!r}")
        bad = array != np.floor(array)
        if bad.any():
            raise ValueError(f"{name} must hold whole numbers, not {_first(array, bad)!r}")
        if (np.abs(array) <= _EXACT_FLOAT).all():
            array = array.astype(np.int64)
        else:       # compared exactly as Python ints
            array = np.array([int(v) for v in array.ravel().tolist()], dtype=object).reshape(
                array.shape)
    if array.dtype == object or array.dtype.kind == "u":
        flat = array.ravel().tolist()
        for value in flat:
            if not lo <= value <= hi:
                raise ValueError(f"{name} {_show(value)} does not fit {fits}")
        return np.array(flat, dtype=np.int64).reshape(array.shape)
    array = array.astype(np.int64)
    bad = (array < lo) | (array > hi)
    if bad.any():
        raise ValueError(f"{name} {_first(array, bad)} does not fit {fits}")
    return array


def real_array(name, values, *, ndim=None):
    """``values`` as a float64 array of finite numbers (exact: integers up to ``2^53``).

    Raises
    ------
    TypeError
        The values are bools, strings or other non-numbers.
    ValueError
        The array is ragged or of the wrong dimensions, a value is NaN or infinite, or an
        integer is too large for a float to hold exactly.
    """
    array, kind = _array(name, values, ndim)
    if array.dtype == object:
        big = [value for value in array.ravel().tolist()
               if isinstance(value, int) and abs(value) > _EXACT_FLOAT]
    elif kind == "int":
        big = array[(array > _EXACT_FLOAT) | (array < -_EXACT_FLOAT)].tolist()
    else:
        big = []
    if big:
        raise ValueError(f"{name} {big[0]} is too large to hold exactly as a float "
                         f"(at most 2^53 in magnitude)")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name} must be finite, not {_first(array, bad)!r}")
    return array
