"""Reading a JSON file of records converts nothing: date-like columns stay the text they were."""

from __future__ import annotations

import json

from producers.files import read_frame


def test_json_records_keep_their_text(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"REF_DATE": "2024-01-05", "created_at": "2024-01-01", "date": "2024-02-03", "x": 1}]))
    row = read_frame(path).iloc[0]
    assert (row["REF_DATE"], row["created_at"], row["date"], int(row["x"])) == ("2024-01-05", "2024-01-01", "2024-02-03", 1)
