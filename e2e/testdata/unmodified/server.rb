# A plain Ruby HTTP server that binds its own port (TCPServer.new: socket,
# SO_REUSEADDR, bind, listen), as Ruby servers do. It knows nothing of
# hotcluster (the generation in its answers is only for the tests).
#
#   ruby server.rb PORT [HOST [PREFORK]]
#
# With PREFORK > 0 it binds, then forks PREFORK children that accept (as
# puma clustered and unicorn do) and waits for them. On SIGTERM each
# process finishes the request it is answering and exits. The socket may be
# non-blocking (hotcluster's is) and shared: accept_nonblock, retried after
# IO.select, as every process but one finds nothing to accept.
require 'socket'

port = Integer(ARGV.fetch(0))
host = ARGV.fetch(1, '0.0.0.0')
prefork = Integer(ARGV.fetch(2, '0'))
server = TCPServer.new(host, port)

def serve(server)
  wake_r, wake_w = IO.pipe
  stopping = false
  trap('TERM') do
    stopping = true
    wake_w.write_nonblock('x', exception: false)
  end
  body = "hello pid=#{Process.pid} gen=#{ENV['HOTCLUSTER_GENERATION']}\n"
  resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}"
  until stopping
    ready, = IO.select([server, wake_r])
    next unless ready.include?(server)
    c = server.accept_nonblock(exception: false)
    next if c == :wait_readable # another process took it
    begin
      req = +''
      req << c.readpartial(4096) until req.include?("\r\n\r\n")
      c.write(resp)
    rescue EOFError, SystemCallError
      # the client went away
    ensure
      c.close
    end
  end
  server.close
end

if prefork.zero?
  serve(server)
  exit 0
end
kids = Array.new(prefork) { fork { serve(server) } }
server.close
trap('TERM') { kids.each { |pid| Process.kill('TERM', pid) rescue nil } }
Process.waitall
