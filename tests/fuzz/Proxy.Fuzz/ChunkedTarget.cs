using System.Buffers;
using Proxy.Http.Http1;

namespace Proxy.Fuzz;

/// <summary>
/// Chunked body decoder, driven as its documented pipe loop: Read, forward data, advance to <c>consumed</c> (examined
/// to the end on NeedMoreData), read more. Contract checked: the only failure is <see cref="Http1ParseException"/>;
/// Data is never empty; NeedMoreData means no progress is possible without more bytes; the decoded payload, trailers,
/// end offset and outcome (for a refusal, not its status) are the same whether the body arrives at once or in pieces of any size.
/// <para>Control bits: 0 small limits (chunk line 16, trailers 64 bytes).</para>
/// </summary>
internal static class ChunkedTarget
{
    public static void Run(byte[] data)
    {
        var input = new FuzzInput(data);
        var options = input.Bit(0) ? new Http1ParserOptions { MaxChunkLineBytes = 16, MaxTrailerBytes = 64 } : Http1ParserOptions.Default;
        var payload = input.Payload;
        var whole = Decode(payload, [], options);
        var pieces = Decode(payload, input.Cuts(payload.Length), options);

        // A refusal's status may depend on arrival (a partial trailer line with a bare CR is refused with 400 before the
        // section grows past the trailer limit, which all at once gives 431): both refuse, so refusals compare without it.
        ContractViolationException.Equal(WithoutStatus(whole), WithoutStatus(pieces), "outcome with the body in pieces");
    }

    private static string WithoutStatus(string outcome) => outcome.StartsWith("error ", StringComparison.Ordinal) ? "error" + outcome[9..] : outcome;

    /// <summary>Feeds <paramref name="payload"/> as reads that end at <paramref name="arrivals"/> (then the rest).</summary>
    private static string Decode(ReadOnlyMemory<byte> payload, int[] arrivals, Http1ParserOptions options)
    {
        var reader = new ChunkedBodyReader(options);
        reader.Reset();
        var body = new List<byte>();
        var start = 0;
        var nextArrival = 0;
        var delivered = arrivals.Length > 0 ? arrivals[0] : payload.Length;
        var calls = 0;
        try
        {
            while (true)
            {
                ContractViolationException.Check(++calls <= (2 * payload.Length) + 8, "no progress: too many Read calls");

                // The unconsumed bytes, one segment per arrival, as a Pipe hands them over.
                var cuts = arrivals.Where(a => a > start && a < delivered).Select(a => a - start).ToArray();
                var buffer = Sequences.Split(payload[start..delivered], cuts);
                var result = reader.Read(buffer, out var chunk, out var consumed);
                var offset = Sequences.Offset(buffer, consumed);
                ContractViolationException.Check(offset >= 0 && offset <= buffer.Length, $"consumed {offset} of {buffer.Length}");
                switch (result)
                {
                    case ChunkedReadResult.Data:
                        ContractViolationException.Check(!chunk.IsEmpty, "Data result with no data");
                        ContractViolationException.Check(Sequences.Offset(buffer, chunk.End) == offset, "consumed is not the end of the data");
                        body.AddRange(chunk.ToArray());
                        start += (int)offset;
                        break;
                    case ChunkedReadResult.Completed:
                        ContractViolationException.Check(reader.IsComplete, "Completed but not IsComplete");
                        ContractViolationException.Check(reader.BytesRead == body.Count, $"BytesRead {reader.BytesRead} but {body.Count} delivered");
                        return $"completed at {start + offset}, body {Convert.ToHexString(body.ToArray())}, trailers {Convert.ToHexString(chunk.ToArray())} ({reader.Trailers.Count})";
                    default:
                        ContractViolationException.Check(chunk.IsEmpty, "NeedMoreData with data");
                        start += (int)offset;
                        if (delivered == payload.Length)
                        {
                            // Everything examined and nothing more will come: the body is incomplete.
                            var again = reader.Read(Sequences.Split(payload[start..], []), out _, out _);
                            ContractViolationException.Check(again == ChunkedReadResult.NeedMoreData, $"NeedMoreData, then {again} on the same bytes");
                            return $"incomplete, body {Convert.ToHexString(body.ToArray())}";
                        }

                        nextArrival++;
                        delivered = nextArrival < arrivals.Length ? arrivals[nextArrival] : payload.Length;
                        break;
                }
            }
        }
        catch (Http1ParseException e)
        {
            return $"error {e.StatusCode}, body {Convert.ToHexString(body.ToArray())}";
        }
    }
}
