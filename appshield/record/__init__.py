"""Recording every decision, and replaying a recording against another policy.

    APPSHIELD_RECORD=FILE  /  appshield run --record FILE -- CMD
        every decision of every shielded process (allowed ones too), folded, appended to FILE
    appshield replay --policy NEW FILE...
        every recorded operation decided against NEW: what NEW would deny that the recorded
        run did not (exit 1), and what it would newly allow
    appshield learn --from FILE
        a policy from a recording (learn's own records are recordings too)

- `format`: the lines (header, entry, overflow) and their reading;
- `writer`: the recording decider and the file it appends to, inside each process;
- `replay`: reading recordings back and deciding them against a policy.
See docs/lifecycle.md ("Record and replay").
"""
