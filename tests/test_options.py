"""Declared options: unknown keys name the valid ones, wrong types name key, value and expected type."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from harness.core.options import OptionError, check_fields, check_options, describe_options, option, option_infos


@dataclass
class Demo:
    device: str = option("cpu", "torch device")
    batch_size: int = option(8, "pairs per forward", minimum=1)
    temperature: float = option(1.0, "softmax temperature", minimum=0.0)
    dtype: Literal["float32", "bfloat16"] = option("float32", "weights dtype")
    max_pixels: Optional[int] = option(None, "downscale larger images")
    trust_remote_code: bool = option(False, "run the checkpoint's own code")
    level_ids: list[int] | None = option(None, "five token ids")
    engine: dict = option({}, "extra engine settings")
    api_key: str | None = option(None, "key", secret=True)


def test_values_are_coerced_to_the_declared_types():
    got = check_options(Demo, {"batch-size": "16", "temperature": "1e-3", "max_pixels": 4096.0,
                               "level_ids": (1, 2, 3), "dtype": "bfloat16", "engine": {"a": 1}}, "m")
    assert got == {"batch_size": 16, "temperature": 0.001, "max_pixels": 4096, "level_ids": [1, 2, 3],
                   "dtype": "bfloat16", "engine": {"a": 1}}
    assert type(got["batch_size"]) is int and type(got["temperature"]) is float
    assert check_options(Demo, {"temperature": 2}, "m") == {"temperature": 2.0}
    assert check_options(Demo, {"max_pixels": None}, "m") == {"max_pixels": None}
    assert check_options(Demo, None, "m") == {}
    assert Demo().engine == {} and Demo().engine is not Demo().engine
    assert check_options(Demo, {"device": 0, "batch_size": "1e1"}, "m") == {"device": "0", "batch_size": 10}


@pytest.mark.parametrize("values, message", [
    ({"batchsize": 4}, r"model hf:x: unknown option 'batchsize' \(did you mean 'batch_size'\?\); valid options: "
                       r"api_key, batch_size, device"),
    ({"colour": 1}, r"unknown option 'colour'; valid options: api_key, batch_size"),
    ({"batch_size": True}, r"option 'batch_size' = True \(bool\) is not int"),
    ({"batch_size": "eight"}, r"option 'batch_size' = 'eight' \(str\) is not int"),
    ({"batch_size": 2.5}, r"option 'batch_size' = 2.5 \(float\) is not int"),
    ({"batch_size": 0}, r"option 'batch_size' must be >= 1, got 0"),
    ({"temperature": -1}, r"option 'temperature' must be >= 0, got -1"),
    ({"temperature": "nan"}, r"option 'temperature' must be a finite number"),
    ({"temperature": False}, r"option 'temperature' = False \(bool\) is not float"),
    ({"trust_remote_code": "no"}, r"option 'trust_remote_code' = 'no' \(str\) is not bool"),
    ({"trust_remote_code": 1}, r"option 'trust_remote_code' = 1 \(int\) is not bool"),
    ({"dtype": "fp8"}, r"option 'dtype' = 'fp8' \(str\) is not one of 'float32', 'bfloat16'"),
    ({"device": 1.5}, r"option 'device' = 1.5 \(float\) is not str"),
    ({"level_ids": [1, "x"]}, r"option 'level_ids' = \[1, 'x'\] \(list\) is not list or None"),
    ({"engine": [1]}, r"option 'engine' = \[1\] \(list\) is not dict"),
    ({"api_key": [1234, 5678]}, r"option 'api_key' = \*\*\* \(list\) is not str or None"),
    # a URL quoted in a message loses its credentials, whatever the option
    ({"batch_size": "http://bob:pw1@127.0.0.1:8/v1?token=t9"},
     r"'http://127.0.0.1:8/v1\?token=\*\*\*' \(str\) is not int"),
    ({"engine": ["https://tok3n@h/"]}, r"option 'engine' = \['https://h/'\] \(list\) is not dict"),
])
def test_bad_options_are_named_with_the_fix(values, message):
    with pytest.raises(OptionError, match=message):
        check_options(Demo, values, "model hf:x")


def test_secret_options_are_listed_and_masked_when_recorded():
    from harness.core.options import options_secrets, recorded_options, secret_options

    assert secret_options(Demo) == {"api_key"} and secret_options(None) == set()
    values = check_options(Demo, {"api_key": "k3y-value", "device": "cuda", "engine": {"url": "http://u:p4@h"}}, "m")
    assert recorded_options(Demo, values) == {"api_key": "***", "device": "cuda", "engine": {"url": "http://h"}}
    assert options_secrets(Demo, values) == {"k3y-value", "p4"}


def test_a_non_mapping_is_refused():
    with pytest.raises(OptionError, match="options must be a mapping"):
        check_options(Demo, ["batch_size=4"], "model hf:x")


def test_required_options_are_reported():
    @dataclass
    class Needs:
        url: str = option(help="server URL")
        n: int = option(1, "count")

    with pytest.raises(OptionError, match="missing required option"):
        check_options(Needs, {"n": 2}, "m")
    assert check_options(Needs, {"url": "http://x"}, "m") == {"url": "http://x"}
    assert [i.required for i in option_infos(Needs)] == [True, False]


def test_description_lists_every_option_with_type_default_and_help():
    text = describe_options(Demo)
    assert "  batch_size (int, default 8): pairs per forward" in text
    assert "dtype (one of 'float32', 'bfloat16', default 'float32'): weights dtype" in text
    assert "max_pixels (int or None, default None)" in text
    assert len(text.splitlines()) == len(option_infos(Demo))


def test_dataclass_fields_are_checked_in_place():
    d = Demo(batch_size="4", temperature="1e-2")
    check_fields(d, "config")
    assert (d.batch_size, d.temperature) == (4, 0.01)
    with pytest.raises(OptionError, match=r"config: 'trust_remote_code' = 'no' \(str\) is not bool"):
        check_fields(Demo(trust_remote_code="no"), "config")
