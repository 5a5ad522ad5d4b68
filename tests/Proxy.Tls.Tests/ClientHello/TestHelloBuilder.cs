namespace Proxy.Tls.Tests.ClientHello;

/// <summary>Builds synthetic ClientHellos (one record) from a list of extensions, for the cases real clients never send.</summary>
internal static class TestHelloBuilder
{
    public static (ushort Type, byte[] Data) ServerName(string host) => ServerNameRaw(System.Text.Encoding.ASCII.GetBytes(host));

    public static (ushort Type, byte[] Data) ServerNameRaw(params byte[][] hostNames)
    {
        var entries = new List<byte>();
        foreach (var h in hostNames)
        {
            entries.Add(0);
            entries.Add((byte)(h.Length >> 8));
            entries.Add((byte)h.Length);
            entries.AddRange(h);
        }

        return (0, [(byte)(entries.Count >> 8), (byte)entries.Count, .. entries]);
    }

    public static (ushort Type, byte[] Data) Alpn(params string[] protocols)
    {
        var list = new List<byte>();
        foreach (var p in protocols)
        {
            list.Add((byte)p.Length);
            list.AddRange(System.Text.Encoding.ASCII.GetBytes(p));
        }

        return (16, [(byte)(list.Count >> 8), (byte)list.Count, .. list]);
    }

    public static (ushort Type, byte[] Data) SupportedVersions(params ushort[] versions)
    {
        var list = new List<byte> { (byte)(versions.Length * 2) };
        foreach (var v in versions)
        {
            list.Add((byte)(v >> 8));
            list.Add((byte)v);
        }

        return (43, [.. list]);
    }

    /// <summary>The handshake message (header included).</summary>
    public static byte[] Message(params (ushort Type, byte[] Data)[] extensions) => Message(true, extensions);

    public static byte[] Message(bool withExtensions, params (ushort Type, byte[] Data)[] extensions)
    {
        var body = new List<byte> { 0x03, 0x03 };
        body.AddRange(new byte[32]);
        body.Add(0); // session id
        body.AddRange(new byte[] { 0, 2, 0x13, 0x01 }); // one cipher suite
        body.AddRange(new byte[] { 1, 0 }); // null compression
        if (withExtensions)
        {
            var ext = new List<byte>();
            foreach (var (type, data) in extensions)
            {
                ext.Add((byte)(type >> 8));
                ext.Add((byte)type);
                ext.Add((byte)(data.Length >> 8));
                ext.Add((byte)data.Length);
                ext.AddRange(data);
            }

            body.Add((byte)(ext.Count >> 8));
            body.Add((byte)ext.Count);
            body.AddRange(ext);
        }

        return [1, (byte)(body.Count >> 16), (byte)(body.Count >> 8), (byte)body.Count, .. body];
    }

    public static byte[] Wire(params (ushort Type, byte[] Data)[] extensions) => ClientHelloVectors.Record(Message(extensions));
}
