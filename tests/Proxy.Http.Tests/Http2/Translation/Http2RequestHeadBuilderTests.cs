using System.Buffers;
using System.Text;
using Proxy.Http.Http1;
using Proxy.Http.Http2.Translation;

namespace Proxy.Http.Tests.Http2.Translation;

public class Http2RequestHeadBuilderTests
{
    private static Http2RequestHeadBuilder Build(params (string Name, string Value)[] fields)
    {
        var builder = new Http2RequestHeadBuilder();
        foreach (var (name, value) in fields)
        {
            builder.Add(Encoding.Latin1.GetBytes(name), Encoding.Latin1.GetBytes(value));
        }

        return builder;
    }

    private static string Head(Http2RequestHeadBuilder builder) => Encoding.Latin1.GetString(builder.Head.Span);

    [Fact]
    public void Complete_Get_WritesRequestLineHostAndFields()
    {
        using var b = Build((":method", "GET"), (":scheme", "http"), (":authority", "svc.local:8080"), (":path", "/a?b=c"), ("accept", "*/*"), ("x-id", "1"));

        Assert.Equal(Http2FieldError.None, b.Complete(hasBody: false));

        Assert.Equal("GET /a?b=c HTTP/1.1\r\nhost: svc.local:8080\r\naccept: */*\r\nx-id: 1\r\n\r\n", Head(b));
        Assert.Equal("http", Encoding.ASCII.GetString(b.Scheme));
        Assert.Equal("/a?b=c", Encoding.ASCII.GetString(b.Path));
    }

    [Fact]
    public void Complete_BodyWithoutContentLength_AddsChunkedFraming()
    {
        using var b = Build((":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/"));

        Assert.Equal(Http2FieldError.None, b.Complete(hasBody: true));

        Assert.Equal("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n", Head(b));
    }

    [Fact]
    public void Complete_BodyWithContentLength_KeepsContentLength()
    {
        using var b = Build((":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/"), ("content-length", "5"));

        Assert.Equal(Http2FieldError.None, b.Complete(hasBody: true));

        Assert.True(b.HasContentLength);
        Assert.Equal("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n", Head(b));
    }

    [Fact]
    public void Complete_CookieCrumbs_JoinedIntoOneField()
    {
        using var b = Build((":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/"), ("cookie", "a=1"), ("x", "y"), ("cookie", "b=2"));

        Assert.Equal(Http2FieldError.None, b.Complete(hasBody: false));

        Assert.Equal("GET / HTTP/1.1\r\nhost: a\r\nx: y\r\ncookie: a=1; b=2\r\n\r\n", Head(b));
    }

    [Fact]
    public void Complete_HostEqualToAuthority_WrittenOnce()
    {
        using var b = Build((":method", "GET"), (":scheme", "http"), (":authority", "a.b"), (":path", "/"), ("x", "1"), ("host", "A.B"), ("y", "2"));

        Assert.Equal(Http2FieldError.None, b.Complete(hasBody: false));

        Assert.Equal("GET / HTTP/1.1\r\nhost: a.b\r\nx: 1\r\ny: 2\r\n\r\n", Head(b));
    }

    [Fact]
    public void Complete_HostWithoutAuthority_KeptAsField()
    {
        using var b = Build((":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "h"));

        Assert.Equal(Http2FieldError.None, b.Complete(hasBody: false));

        Assert.Equal("GET / HTTP/1.1\r\nhost: h\r\n\r\n", Head(b));
    }

    [Fact]
    public void Complete_Connect_UsesAuthorityForm()
    {
        using var b = Build((":method", "CONNECT"), (":authority", "db:5432"));

        Assert.Equal(Http2FieldError.None, b.Complete(hasBody: true));

        Assert.Equal("CONNECT db:5432 HTTP/1.1\r\nhost: db:5432\r\n\r\n", Head(b));
    }

    [Fact]
    public void Complete_OptionsAsterisk_Accepted()
    {
        using var b = Build((":method", "OPTIONS"), (":scheme", "http"), (":authority", "a"), (":path", "*"));

        Assert.Equal(Http2FieldError.None, b.Complete(hasBody: false));
        Assert.StartsWith("OPTIONS * HTTP/1.1\r\n", Head(b), StringComparison.Ordinal);
    }

    public static TheoryData<string[], Http2FieldError> Malformed => new()
    {
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "Accept", "x"], Http2FieldError.InvalidName },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "", "x"], Http2FieldError.InvalidName },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "a b", "x"], Http2FieldError.InvalidName },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "x", "a\r\nb: c"], Http2FieldError.InvalidValue },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "x", "a\0"], Http2FieldError.InvalidValue },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "x", " a"], Http2FieldError.InvalidValue },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "x", "a\t"], Http2FieldError.InvalidValue },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "connection", "close"], Http2FieldError.ConnectionSpecific },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "transfer-encoding", "chunked"], Http2FieldError.ConnectionSpecific },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "upgrade", "websocket"], Http2FieldError.ConnectionSpecific },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "keep-alive", "1"], Http2FieldError.ConnectionSpecific },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "proxy-connection", "1"], Http2FieldError.ConnectionSpecific },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "te", "gzip"], Http2FieldError.InvalidTe },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", ":status", "200"], Http2FieldError.UnknownPseudoHeader },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", ":protocol", "websocket"], Http2FieldError.UnknownPseudoHeader },
        { [":method", "GET", ":method", "GET", ":scheme", "http", ":path", "/"], Http2FieldError.DuplicatePseudoHeader },
        { [":method", "GET", "x", "1", ":scheme", "http", ":path", "/"], Http2FieldError.PseudoHeaderAfterField },
        { [":scheme", "http", ":authority", "a", ":path", "/"], Http2FieldError.MissingPseudoHeader },
        { [":method", "GET", ":authority", "a", ":path", "/"], Http2FieldError.MissingPseudoHeader },
        { [":method", "GET", ":scheme", "http", ":authority", "a"], Http2FieldError.MissingPseudoHeader },
        { [":method", "CONNECT", ":scheme", "http", ":authority", "a:1", ":path", "/"], Http2FieldError.MissingPseudoHeader },
        { [":method", "CONNECT"], Http2FieldError.MissingPseudoHeader },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", ""], Http2FieldError.InvalidPath },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "a/b"], Http2FieldError.InvalidPath },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "*"], Http2FieldError.InvalidPath },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/a b"], Http2FieldError.InvalidPath },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "http://x/"], Http2FieldError.InvalidPath },
        { [":method", "G ET", ":scheme", "http", ":authority", "a", ":path", "/"], Http2FieldError.InvalidValue },
        { [":method", "GET", ":scheme", "http", ":authority", "user@a", ":path", "/"], Http2FieldError.InvalidValue },
        { [":method", "GET", ":scheme", "http", ":authority", "a/b", ":path", "/"], Http2FieldError.InvalidValue },
        { [":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "host", "b"], Http2FieldError.HostMismatch },
        { [":method", "GET", ":scheme", "http", ":path", "/", "host", "a", "host", "a"], Http2FieldError.HostMismatch },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Complete_MalformedSection_ReportsTheRule(string[] flat, Http2FieldError expected)
    {
        var fields = new (string, string)[flat.Length / 2];
        for (var i = 0; i < fields.Length; i++)
        {
            fields[i] = (flat[2 * i], flat[(2 * i) + 1]);
        }

        using var b = Build(fields);

        Assert.Equal(expected, b.Complete(hasBody: false));
        Assert.Equal(expected, b.Error);
    }

    [Fact]
    public void Add_PastLimit_TooLarge()
    {
        using var b = new Http2RequestHeadBuilder(maxBytes: 128);
        b.Add(":method"u8, "GET"u8);
        b.Add(":scheme"u8, "http"u8);
        b.Add(":authority"u8, "a"u8);
        b.Add(":path"u8, "/"u8);
        b.Add("x"u8, Encoding.ASCII.GetBytes(new string('v', 200)));

        Assert.Equal(Http2FieldError.TooLarge, b.Complete(hasBody: false));
    }

    [Fact]
    public void Reset_ReusesBuilderForTheNextRequest()
    {
        using var b = Build((":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/"), ("x", "a\nb"));
        Assert.Equal(Http2FieldError.InvalidValue, b.Complete(hasBody: false));

        b.Reset();
        b.Add(":method"u8, "DELETE"u8);
        b.Add(":scheme"u8, "https"u8);
        b.Add(":authority"u8, "z"u8);
        b.Add(":path"u8, "/q"u8);

        Assert.Equal(Http2FieldError.None, b.Complete(hasBody: false));
        Assert.Equal("DELETE /q HTTP/1.1\r\nhost: z\r\n\r\n", Head(b));
    }

    [Fact]
    public void Head_ParsesWithTheHttp1Parser()
    {
        using var b = Build((":method", "POST"), (":scheme", "http"), (":authority", "svc:80"), (":path", "/upload"), ("content-type", "text/plain"), ("cookie", "a=1"), ("cookie", "b=2"));
        Assert.Equal(Http2FieldError.None, b.Complete(hasBody: true));

        using var head = new Http1RequestHead();
        var parser = new Http1RequestHeadParser();
        Assert.True(parser.TryParse(new ReadOnlySequence<byte>(b.Head), head, out _));

        Assert.Equal(Http1Method.Post, head.Method);
        Assert.Equal("/upload", Encoding.ASCII.GetString(head.Target));
        Assert.Equal("svc:80", Encoding.ASCII.GetString(head.Host));
        Assert.Equal(Http1BodyKind.Chunked, head.BodyKind);
        Assert.True(head.Headers.TryGetValue("cookie"u8, out var cookie));
        Assert.Equal("a=1; b=2", Encoding.ASCII.GetString(cookie));
    }
}
