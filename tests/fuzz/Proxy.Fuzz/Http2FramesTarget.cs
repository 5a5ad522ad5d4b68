using System.Buffers;
using System.Text;
using Proxy.Http.Http2;
using Proxy.Http.Http2.Frames;

namespace Proxy.Fuzz;

/// <summary>
/// HTTP/2 frame reader plus the field-block sequencing (<see cref="Http2HeaderBlockAssembler"/>), read as a connection
/// reads them: optional client preface, then frames until the input ends or a connection error. Contract checked: the
/// only failures are <see cref="Http2ConnectionException"/> (buffer unchanged, reading stops) and
/// <see cref="Http2StreamException"/> (the frame consumed, reading goes on); false consumes nothing; a frame consumes
/// exactly 9 + length bytes and its payload lies inside it; every event is the same whatever the segmentation; a prefix
/// of the input gives a prefix of the events (the last one possibly "incomplete").
/// <para>Control bits: 0 expect the client preface, 1 max frame size 16384 (else 16777215), 2 small field-block caps.</para>
/// </summary>
internal static class Http2FramesTarget
{
    public static void Run(byte[] data)
    {
        var input = new FuzzInput(data);
        var payload = input.Payload;
        var whole = Read(new ReadOnlySequence<byte>(payload), input);
        var split = Read(Sequences.Split(payload, input.Cuts(payload.Length)), input);
        ContractViolationException.Equal(string.Join('\n', whole), string.Join('\n', split), "events with the input segmented");

        var prefix = Read(new ReadOnlySequence<byte>(payload[..input.PrefixLength(payload.Length)]), input);
        for (var i = 0; i < prefix.Count; i++)
        {
            var last = i == prefix.Count - 1;
            ContractViolationException.Check(i < whole.Count, $"prefix has more events than the whole input ({prefix[i]})");
            if (!(last && prefix[i] == "incomplete"))
            {
                ContractViolationException.Equal(whole[i], prefix[i], $"event {i} of a prefix");
            }
        }
    }

    private static List<string> Read(ReadOnlySequence<byte> buffer, FuzzInput input)
    {
        var events = new List<string>();
        var maxFrameSize = input.Bit(1) ? Http2Constants.MinMaxFrameSize : Http2Constants.MaxMaxFrameSize;
        var assembler = input.Bit(2) ? new Http2HeaderBlockAssembler(maxBlockSize: 256, maxFrames: 4) : new Http2HeaderBlockAssembler();
        var frame = new Http2Frame();
        if (input.Bit(0))
        {
            var before = buffer;
            try
            {
                if (!Http2FrameReader.TryReadClientPreface(ref buffer))
                {
                    Unchanged(before, buffer, "incomplete preface");
                    events.Add("incomplete");
                    return events;
                }

                ContractViolationException.Check(before.Length - buffer.Length == 24, "preface not 24 bytes");
            }
            catch (Http2ConnectionException e)
            {
                Unchanged(before, buffer, "bad preface");
                events.Add($"connection error {e.ErrorCode} {e.Reason}");
                return events;
            }
        }

        while (true)
        {
            var before = buffer;
            bool complete;
            ReadOnlySequence<byte> payload;
            try
            {
                complete = Http2FrameReader.TryReadFrame(ref buffer, frame, maxFrameSize, out payload);
            }
            catch (Http2ConnectionException e)
            {
                Unchanged(before, buffer, "connection error");
                events.Add($"connection error {e.ErrorCode} {e.Reason}");
                return events;
            }
            catch (Http2StreamException e)
            {
                ContractViolationException.Check(before.Length - buffer.Length == 9L + frame.PayloadLength, "stream error did not consume the frame");
                ContractViolationException.Check(e.StreamId == frame.StreamId && e.StreamId != 0, "stream error on another stream");
                events.Add($"stream error {e.StreamId} {e.ErrorCode} {e.Message} ({Describe(frame)})");
                continue;
            }

            if (!complete)
            {
                Unchanged(before, buffer, "incomplete frame");
                events.Add("incomplete");
                return events;
            }

            ContractViolationException.Check(before.Length - buffer.Length == 9L + frame.PayloadLength, "frame did not consume 9 + length bytes");
            ContractViolationException.Check(frame.PayloadLength <= maxFrameSize, "frame above the maximum size");
            var start = Sequences.Offset(before, payload.Start);
            ContractViolationException.Check(payload.IsEmpty || (start >= 9 && start + payload.Length <= 9 + frame.PayloadLength), "payload outside the frame");
            var text = new StringBuilder(Describe(frame)).Append(" payload ").Append(Convert.ToHexString(payload.ToArray()));
            if (frame.Type == Http2FrameType.Settings && !frame.IsAck)
            {
                var count = 0;
                foreach (var setting in new Http2SettingsEnumerator(payload))
                {
                    text.Append(' ').Append(setting.Parameter).Append('=').Append(setting.Value);
                    count++;
                }

                ContractViolationException.Check(count * 6 == frame.PayloadLength, "settings entries do not cover the payload");
            }

            try
            {
                var blockEnds = assembler.OnFrame(frame, payload.Length);
                text.Append(blockEnds ? " block-end" : string.Empty).Append(assembler.ExpectsContinuation ? " expects-continuation" : string.Empty);
            }
            catch (Http2ConnectionException e)
            {
                events.Add($"{text} -> connection error {e.ErrorCode} {e.Reason}");
                return events;
            }

            events.Add(text.ToString());
        }
    }

    private static string Describe(Http2Frame f) =>
        $"{f.Type} flags={f.Flags:x2} stream={f.StreamId} len={f.PayloadLength} pad={f.PadLength} prio={f.HasPriority}/{f.StreamDependency}/{f.Exclusive}/{f.Weight} promised={f.PromisedStreamId} error={f.ErrorCode} last={f.LastStreamId} window={f.WindowIncrement} ping={f.PingData:x16}";

    private static void Unchanged(in ReadOnlySequence<byte> before, in ReadOnlySequence<byte> after, string what) =>
        ContractViolationException.Check(before.Start.Equals(after.Start) && before.Length == after.Length, $"{what} changed the buffer");
}
