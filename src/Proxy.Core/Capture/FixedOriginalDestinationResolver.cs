using System.Net;
using System.Net.Sockets;
using Proxy.Core.Addresses;

namespace Proxy.Core.Capture;

/// <summary>
/// A resolver for tests and for non-transparent listeners: every connection "was sent to" one configured
/// endpoint, or every connection fails with one configured error.
/// </summary>
public sealed class FixedOriginalDestinationResolver : IOriginalDestinationResolver
{
    private readonly OriginalDestination _destination;
    private readonly string? _error;
    private int _calls;

    public FixedOriginalDestinationResolver(OriginalDestination destination)
    {
        ArgumentNullException.ThrowIfNull(destination.EndPoint);
        _destination = destination;
    }

    public FixedOriginalDestinationResolver(IPEndPoint destination)
        : this(new OriginalDestination(destination))
    {
    }

    private FixedOriginalDestinationResolver(string error)
    {
        _error = error;
    }

    /// <summary>A resolver that fails every connection with <paramref name="error"/>.</summary>
    public static FixedOriginalDestinationResolver Failing(string error)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(error);
        return new FixedOriginalDestinationResolver(error);
    }

    /// <summary>How many times <see cref="TryResolve"/> was called.</summary>
    public int Calls => Volatile.Read(ref _calls);

    public bool TryResolve(Socket accepted, out OriginalDestination destination, out string? error)
    {
        Interlocked.Increment(ref _calls);
        if (_error is not null)
        {
            destination = default;
            error = _error;
            return false;
        }

        destination = _destination;
        error = null;
        return true;
    }
}
