"""The incremental SSE decoder."""

from __future__ import annotations

from noukai._sse import Frame, SSEDecoder


def feed_all(chunks: list[bytes]) -> list[Frame]:
    decoder = SSEDecoder()
    frames: list[Frame] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    return frames


def test_frames_with_id_event_data_and_comments() -> None:
    raw = b': ping\n\nretry: 1000\n\nid: 7\nevent: step_output\ndata: {"a": 1}\n\n'
    frames = feed_all([raw])
    assert frames[0].comments == ["ping"] and not frames[0].has_data
    assert frames[1].retry == 1000 and not frames[1].has_data
    assert (frames[2].id, frames[2].event, frames[2].data) == ("7", "step_output", '{"a": 1}')


def test_any_chunking_gives_the_same_frames() -> None:
    raw = "id: 1\r\nevent: x\r\ndata: héllo\r\ndata: wörld\r\n\r\n: c\n\nid: 2\rdata: y\r\r\n".encode()
    whole = feed_all([raw])
    for size in (1, 2, 3, 5):
        pieces = [raw[i : i + size] for i in range(0, len(raw), size)]
        assert [(f.id, f.event, f.data, f.comments) for f in feed_all(pieces)] == [
            (f.id, f.event, f.data, f.comments) for f in whole
        ]
    assert [f.data for f in whole] == ["héllo\nwörld", "", "y"]


def test_unterminated_frame_and_bad_fields() -> None:
    frames = feed_all([b"\xef\xbb\xbfdata: a\nretry: soon\nid: bad\0id\nunknown: 1\nevent\n\ndata: cut"])
    assert len(frames) == 1
    assert frames[0].data == "a" and frames[0].retry is None and frames[0].id is None
    assert frames[0].event is None


def test_field_without_space_and_blank_lines() -> None:
    frames = feed_all([b"\n\nevent:x\ndata:1\n\n"])
    assert [(f.event, f.data) for f in frames] == [("x", "1")]


def test_a_frame_is_returned_as_soon_as_its_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: a\ndata: 1") == []
    assert decoder.feed(b"\n") == []
    assert [(f.event, f.data) for f in decoder.feed(b"\n")] == [("a", "1")]
    frames = decoder.feed(b"data: 2\n\ndata: 3\n\nda")
    assert [f.data for f in frames] == ["2", "3"]


def test_field_rules_of_the_standard() -> None:
    raw = (
        "\ufeffdata:no space\n\n"  # BOM dropped; the space after the colon is optional
        "data:  two spaces\n\n"  # only one space is removed
        "data\n\n"  # a field with no colon: an empty value
        "id: 9\nunknown: y\ndata: z\n\n"  # unknown fields are ignored
        "event: cut\ndata: never ended\n"  # no blank line before the end: never dispatched
    ).encode()
    frames = [f for f in feed_all([raw]) if f.has_data]
    assert [(f.id, f.data) for f in frames] == [
        (None, "no space"),
        (None, " two spaces"),
        (None, ""),
        ("9", "z"),
    ]


def test_a_crlf_split_between_chunks_is_one_line_end() -> None:
    raw = b"data: a\r\n\r\ndata: b\r\n\r\n"
    cut = raw.index(b"\r") + 1
    assert [f.data for f in feed_all([raw[:cut], raw[cut:]])] == ["a", "b"]
    assert [f.data for f in feed_all([bytes([b]) for b in raw])] == ["a", "b"]
