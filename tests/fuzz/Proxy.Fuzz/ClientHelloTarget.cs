using System.Buffers;
using System.Text;
using Proxy.Tls.ClientHello;

namespace Proxy.Fuzz;

/// <summary>
/// TLS ClientHello parser (records, handshake reassembly, extensions). Contract checked: it never throws; the span and
/// multi-segment paths agree; Incomplete asks for more bytes than it was given (and no more than the maximum); Parsed
/// reports a wire length inside the input and parses the same from exactly those bytes; every shorter prefix of a
/// parsed hello is Incomplete; a refused prefix means the whole input is refused.
/// <para>Control byte: unused (kept for the common input shape).</para>
/// </summary>
internal static class ClientHelloTarget
{
    public static void Run(byte[] data)
    {
        var input = new FuzzInput(data);
        var payload = input.Payload;
        var whole = ParseSpan(payload.Span);
        var split = ParseSequence(Sequences.Split(payload, input.Cuts(payload.Length)));
        ContractViolationException.Equal(whole.Text, split.Text, "multi-segment result");

        switch (whole.Result.Status)
        {
            case ClientHelloStatus.Incomplete:
                ContractViolationException.Check(
                    whole.Result.BytesNeeded > payload.Length && whole.Result.BytesNeeded <= ClientHelloParser.MaxWireLength,
                    $"incomplete with {payload.Length} bytes but asks for {whole.Result.BytesNeeded}");
                break;
            case ClientHelloStatus.Parsed:
                var wire = whole.Result.BytesNeeded;
                ContractViolationException.Check(wire > 0 && wire <= payload.Length, $"parsed wire length {wire} of {payload.Length}");
                ContractViolationException.Equal(whole.Text, ParseSpan(payload.Span[..wire]).Text, "parse of exactly the hello's bytes");
                var last = ParseSpan(payload.Span[..(wire - 1)]);
                ContractViolationException.Check(last.Result.Status == ClientHelloStatus.Incomplete, $"one byte short of a parsed hello gives {last.Text}");
                break;
        }

        var prefixLength = input.PrefixLength(payload.Length);
        var prefix = ParseSpan(payload.Span[..prefixLength]);
        if (prefix.Result.Status == ClientHelloStatus.Invalid)
        {
            ContractViolationException.Check(whole.Result.Status == ClientHelloStatus.Invalid, $"prefix of {prefixLength} bytes gives {prefix.Text} but the whole input {whole.Text}");
        }
        else if (prefix.Result.Status == ClientHelloStatus.Parsed)
        {
            ContractViolationException.Equal(whole.Text, prefix.Text, $"prefix of {prefixLength} bytes");
        }
        else
        {
            ContractViolationException.Check(whole.Result.Status != ClientHelloStatus.Parsed || whole.Result.BytesNeeded > prefixLength, "prefix holding the whole hello is incomplete");
        }
    }

    private static Outcome ParseSpan(ReadOnlySpan<byte> input)
    {
        var scratch = new byte[ClientHelloParser.MaxMessageLength];
        var result = ClientHelloParser.TryParse(input, scratch, out var hello);
        var outcome = Describe(result, hello);

        // Without scratch, a complete hello that spans records is refused as ScratchTooSmall (its body cannot be read,
        // valid or not); anything else is the same.
        var noScratch = ClientHelloParser.TryParse(input, out var hello2);
        if (noScratch.Error == ClientHelloError.ScratchTooSmall)
        {
            ContractViolationException.Check(
                (result.IsParsed && (hello.Flags & ClientHelloFlags.Reassembled) != 0) || result.Status == ClientHelloStatus.Invalid,
                $"ScratchTooSmall without scratch but {outcome.Text} with it");
        }
        else
        {
            ContractViolationException.Equal(outcome.Text, Describe(noScratch, hello2).Text, "parse without scratch");
        }
        return outcome;
    }

    private static Outcome ParseSequence(in ReadOnlySequence<byte> input)
    {
        var scratch = new byte[ClientHelloParser.SequenceScratchLength];
        var result = ClientHelloParser.TryParse(input, scratch, out var hello);
        return Describe(result, hello);
    }

    private static Outcome Describe(ClientHelloResult result, ClientHelloInfo hello)
    {
        var text = new StringBuilder($"{result.Status} {result.Error} {result.BytesNeeded}");
        if (result.IsParsed)
        {
            text.Append($" v={hello.LegacyVersion:x4}/{hello.MaxVersion:x4} flags={hello.Flags} message={hello.Message.Length} sni={hello.GetServerName()} alpn=");
            foreach (var protocol in hello.AlpnProtocols)
            {
                ContractViolationException.Check(!protocol.IsEmpty, "empty ALPN protocol");
                text.Append(Convert.ToHexString(protocol)).Append(',');
            }

            Span<char> lower = stackalloc char[256];
            var n = hello.CopyServerNameLower(lower);
            text.Append(" lower=").Append(lower[..Math.Max(n, 0)]);
        }
        else
        {
            ContractViolationException.Check(result.Describe().Length > 0, "no description");
        }

        return new Outcome(result, text.ToString());
    }

    private readonly record struct Outcome(ClientHelloResult Result, string Text);
}
