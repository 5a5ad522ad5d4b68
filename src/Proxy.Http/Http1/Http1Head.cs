using System.Buffers;

namespace Proxy.Http.Http1;

/// <summary>
/// What request and response heads share: the header list and the pooled buffer a head spanning several
/// read segments is copied into. One instance per connection, refilled by each parse.
/// </summary>
public abstract class Http1Head : IDisposable
{
    private byte[]? _scratch;

    /// <summary>Header fields in wire order.</summary>
    public Http1HeaderList Headers { get; } = new();

    /// <summary>Returns the pooled copy buffer, if any.</summary>
    public void Dispose()
    {
        var scratch = _scratch;
        _scratch = null;
        Headers.Reset(default);
        if (scratch is not null)
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }

        GC.SuppressFinalize(this);
    }

    internal byte[] RentScratch(int minimumLength)
    {
        if (_scratch is null || _scratch.Length < minimumLength)
        {
            if (_scratch is not null)
            {
                ArrayPool<byte>.Shared.Return(_scratch);
            }

            _scratch = ArrayPool<byte>.Shared.Rent(minimumLength);
        }

        return _scratch;
    }
}
