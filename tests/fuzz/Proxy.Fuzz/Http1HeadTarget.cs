using System.Buffers;
using System.Text;
using Proxy.Http.Http1;

namespace Proxy.Fuzz;

/// <summary>
/// HTTP/1.1 request and response head parsers. Contract checked: the only failure is <see cref="Http1ParseException"/>;
/// the outcome (incomplete / parsed head / refusal status) does not depend on segmentation; a parsed head is parsed the
/// same from exactly its own bytes; every proper prefix of a parsed head is incomplete; a refused prefix is never
/// accepted once more bytes arrive (the whole input, or an incomplete whole input with a few completions).
/// <para>Control bits: 0 response parser, 1 AllowUnregisteredMethods, 2 no Host required, 3 small limits,
/// 5..7 the request method a response answers (GET, HEAD, CONNECT, POST, ...).</para>
/// </summary>
internal static class Http1HeadTarget
{
    private static readonly Http1Method[] RequestMethods =
        [Http1Method.Get, Http1Method.Head, Http1Method.Connect, Http1Method.Post, Http1Method.Options, Http1Method.Put, Http1Method.Delete, Http1Method.Other];

    private static readonly byte[][] Completions =
        ["\n"u8.ToArray(), "\r\n"u8.ToArray(), "\n\r\n"u8.ToArray(), "\r\n\r\n"u8.ToArray(), " HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray(), "\nHost: a\r\n\r\n"u8.ToArray(), "\r\nHost: a\r\n\r\n"u8.ToArray()];

    public static void Run(byte[] data)
    {
        var input = new FuzzInput(data);
        var options = new Http1ParserOptions
        {
            AllowUnregisteredMethods = input.Bit(1),
            RequireHostForHttp11 = !input.Bit(2),
            MaxStartLineBytes = input.Bit(3) ? 64 : 8 * 1024,
            MaxHeaderBytes = input.Bit(3) ? 256 : 32 * 1024,
            MaxHeaderCount = input.Bit(3) ? 8 : 100,
        };
        var response = input.Bit(0);
        var method = RequestMethods[input.Control >> 5];
        var payload = input.Payload;

        var whole = Parse(new ReadOnlySequence<byte>(payload), response, method, options);
        var split = Parse(Sequences.Split(payload, input.Cuts(payload.Length)), response, method, options);
        ContractViolationException.Equal(whole.ToString(), split.ToString(), "segmented outcome");

        if (whole.Kind == OutcomeKind.Parsed)
        {
            var exact = Parse(new ReadOnlySequence<byte>(payload[..(int)whole.Consumed]), response, method, options);
            ContractViolationException.Equal(whole.ToString(), exact.ToString(), "head parsed from its own bytes");
        }

        var prefixLength = input.PrefixLength(payload.Length);
        if (whole.Kind == OutcomeKind.Parsed)
        {
            prefixLength = Math.Min(prefixLength, (int)whole.Consumed - 1);
        }

        foreach (var length in new[] { prefixLength, whole.Kind == OutcomeKind.Parsed ? (int)whole.Consumed - 1 : payload.Length - 1 })
        {
            if (length < 0)
            {
                continue;
            }

            var prefix = Parse(new ReadOnlySequence<byte>(payload[..length]), response, method, options);
            switch (prefix.Kind)
            {
                case OutcomeKind.Incomplete:
                    break;
                case OutcomeKind.Error:
                    // A refused prefix must never be accepted once more bytes arrive. The status may differ (a partial
                    // line is judged on what is visible: e.g. 501 unknown method before the 400 for a CR inside the
                    // line); both refuse and close, so only acceptance is a violation. An incomplete whole input is
                    // tried with a few completions, which must be refused too.
                    ContractViolationException.Check(whole.Kind != OutcomeKind.Parsed, $"prefix of {length} bytes refused ({prefix.Detail}) but the whole input parses: {whole}");
                    if (whole.Kind == OutcomeKind.Incomplete)
                    {
                        foreach (var completion in Completions)
                        {
                            byte[] completed = [.. payload.Span, .. completion];
                            var outcome = Parse(new ReadOnlySequence<byte>(completed), response, method, options);
                            ContractViolationException.Check(outcome.Kind != OutcomeKind.Parsed, $"prefix of {length} bytes refused ({prefix.Detail}) but a completion parses: {outcome}");
                        }
                    }

                    break;
                default:
                    ContractViolationException.Check(whole.Kind == OutcomeKind.Parsed && whole.Consumed <= length, $"prefix of {length} bytes parsed ({prefix}) but the whole input gives {whole}");
                    break;
            }
        }
    }

    private static Outcome Parse(in ReadOnlySequence<byte> buffer, bool response, Http1Method method, Http1ParserOptions options)
    {
        try
        {
            if (response)
            {
                using var head = new Http1ResponseHead();
                if (!new Http1ResponseHeadParser(options).TryParse(buffer, method, head, out var consumed))
                {
                    ContractViolationException.Check(consumed.Equals(buffer.Start), "incomplete head consumed bytes");
                    return new Outcome(OutcomeKind.Incomplete, 0, 0, string.Empty);
                }

                var fields = $"{head.Version} {head.StatusCode} [{Latin1(head.ReasonPhrase)}] {head.BodyKind} {head.ContentLength} ka={head.KeepAlive} tunnel={head.SwitchesToTunnel} up=[{Latin1(head.Upgrade)}] len={head.HeadLength}";
                return Parsed(buffer, consumed, head.HeadLength, fields, head.Headers);
            }
            else
            {
                using var head = new Http1RequestHead();
                if (!new Http1RequestHeadParser(options).TryParse(buffer, head, out var consumed))
                {
                    ContractViolationException.Check(consumed.Equals(buffer.Start), "incomplete head consumed bytes");
                    return new Outcome(OutcomeKind.Incomplete, 0, 0, string.Empty);
                }

                var fields = $"{head.Method} [{Latin1(head.MethodBytes)}] [{Latin1(head.Target)}] {head.TargetForm} {head.Version} {head.BodyKind} {head.ContentLength} ka={head.KeepAlive} continue={head.ExpectContinue} up={head.IsUpgrade} [{Latin1(head.Upgrade)}] host=[{Latin1(head.Host)}] len={head.HeadLength}";
                return Parsed(buffer, consumed, head.HeadLength, fields, head.Headers);
            }
        }
        catch (Http1ParseException e)
        {
            return new Outcome(OutcomeKind.Error, 0, e.StatusCode, e.Error.ToString());
        }
    }

    private static Outcome Parsed(in ReadOnlySequence<byte> buffer, SequencePosition consumed, int headLength, string fields, Http1HeaderList headers)
    {
        var offset = Sequences.Offset(buffer, consumed);
        ContractViolationException.Check(offset > 0 && offset <= buffer.Length, $"consumed {offset} of {buffer.Length}");
        ContractViolationException.Check(offset == headLength, $"consumed {offset} but HeadLength {headLength}");
        var text = new StringBuilder(fields);
        for (var i = 0; i < headers.Count; i++)
        {
            text.Append(" | ").Append(Latin1(headers.GetName(i))).Append(": ").Append(Latin1(headers.GetValue(i)))
                .Append(' ').Append(headers.GetKnown(i)).Append(headers.IsHopByHop(i) ? " hop" : string.Empty);
        }

        return new Outcome(OutcomeKind.Parsed, offset, 0, text.ToString());
    }

    private static string Latin1(ReadOnlySpan<byte> bytes) => Encoding.Latin1.GetString(bytes);

    private enum OutcomeKind
    {
        Incomplete,
        Parsed,
        Error,
    }

    /// <summary>Errors compare by status (what the client sees); the error name is kept for the message only.</summary>
    private readonly record struct Outcome(OutcomeKind Kind, long Consumed, int Status, string Detail)
    {
        public override string ToString() => Kind == OutcomeKind.Error ? $"error {Status}" : $"{Kind} {Consumed} {Detail}";
    }
}
