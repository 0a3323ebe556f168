#!/usr/bin/env bash
# Generate memo.ogg: a ~70 s spoken voice memo (espeak-ng, fixed voice and rate), with pauses between
# sentences, as 44.1 kHz stereo Ogg Vorbis -- so `tilepilot listen` has to decode, downmix and
# resample it, and cut it into three clips at the pauses. Needs espeak-ng and sox on PATH.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sentences=(
  "Voice memo for Tuesday, the fourteenth of May."
  "First, the quarterly report. Anna will send the revised figures to finance before Friday."
  "The budget for the new office chairs was approved at two thousand four hundred euros."
  "Second, the release. The team agreed to ship version three point two at the end of the month, if the tests pass."
  "Marco raised a concern about the database migration. It needs a dry run on the staging server first."
  "Third, hiring. We have two candidates for the support role. Interviews are on Thursday at ten and at two."
  "Remember to book the meeting room for the interviews, and to send the candidates the address."
  "Finally, the team lunch moves from Wednesday to Friday, at half past twelve, at the usual place."
  "That is all for today. Next memo after the release meeting."
)

parts=()
for i in "${!sentences[@]}"; do
  espeak-ng -v en -s 130 -w "$work/s$i.wav" "${sentences[$i]}"
  # 1.5 s of silence after each sentence: the natural places to cut a clip.
  sox "$work/s$i.wav" "$work/p$i.wav" pad 0 1.5
  parts+=("$work/p$i.wav")
done
sox "${parts[@]}" "$work/memo.wav"
sox "$work/memo.wav" -r 44100 -c 2 memo.ogg
echo "wrote $(pwd)/memo.ogg ($(soxi -d memo.ogg))"
