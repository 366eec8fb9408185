package deploy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/nixlos/nixlos/internal/errs"
)

// Target is the machine being deployed to: a shell over SSH (or a fake in
// tests). Commands run as the login user; Deploy prefixes sudo itself.
type Target interface {
	// Run runs a /bin/sh command line with stdin (may be nil). A command
	// that ran and failed returns *ExitError.
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error
	// LocalAddr is the workstation's end of the connection (where the
	// status server listens by default).
	LocalAddr() net.Addr
	Close() error
}

// ExitError is a remote command's non-zero exit status.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// SSHConfig says how to reach the target.
type SSHConfig struct {
	User, Host string
	Port       int
	// Key is a private key file; "" uses the agent ($SSH_AUTH_SOCK), then
	// ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
	Key string
	// KnownHosts is the known_hosts file ("" = ~/.ssh/known_hosts).
	KnownHosts string
	// InsecureHostKey accepts any host key (printed).
	InsecureHostKey bool
	Timeout         time.Duration // connect timeout (default 15 s)
	Log             io.Writer
}

// ParseTarget splits [user@]host[:port]; user defaults to root.
func ParseTarget(s string, port int) (user, host string, p int, err error) {
	user, host = "root", s
	if i := strings.LastIndex(s, "@"); i >= 0 {
		user, host = s[:i], s[i+1:]
	}
	p = port
	if h, ps, e := net.SplitHostPort(host); e == nil {
		n, e := strconv.Atoi(ps)
		if e != nil || n <= 0 || n > 65535 {
			return "", "", 0, errs.BadInput(s, "give [user@]HOST and --port N", "port %q is not a port number", ps)
		}
		host, p = h, n
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if user == "" || host == "" || strings.ContainsAny(user+host, " \t/") {
		return "", "", 0, errs.BadInput(s, "give [user@]HOST, e.g. root@192.0.2.10", "not a target")
	}
	if p <= 0 || p > 65535 {
		return "", "", 0, errs.BadInput("--port", "give a TCP port 1-65535", "%d is not a port", p)
	}
	return user, host, p, nil
}

// DialSSH connects and authenticates. Every failure before a shell exists
// is bad input (exit 2): unreachable, host key unknown or changed, login refused.
func DialSSH(ctx context.Context, c SSHConfig) (Target, error) {
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Second
	}
	addr := net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	auths, closeAgent, err := authMethods(c.Key)
	if err != nil {
		return nil, err
	}
	defer closeAgent()
	hkcb, algos, err := hostKeyCallback(c, addr)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: c.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, errs.BadInput(addr, "check the address and --port, and that sshd runs there and a firewall lets you in", "cannot connect: %v", unwrapNet(err))
	}
	conn.SetDeadline(time.Now().Add(c.Timeout))
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User: c.User, Auth: auths, HostKeyCallback: hkcb, HostKeyAlgorithms: algos, Timeout: c.Timeout,
	})
	if err != nil {
		conn.Close()
		var ke *knownhosts.KeyError
		var hk *hostKeyError
		switch {
		case errors.As(err, &hk):
			return nil, hk.err
		case errors.As(err, &ke):
			return nil, ke
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, errs.BadInput(c.User+"@"+addr, "give the key with --ssh-key FILE or load it into ssh-agent; the target must accept it for "+c.User, "login refused: %v", err)
		}
		return nil, errs.BadInput(addr, "check that it is an SSH server", "SSH handshake failed: %v", err)
	}
	conn.SetDeadline(time.Time{})
	return &sshTarget{c: ssh.NewClient(cc, chans, reqs)}, nil
}

func unwrapNet(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

type hostKeyError struct{ err error }

func (e *hostKeyError) Error() string { return e.err.Error() }

// hostKeyCallback checks the host key against known_hosts and returns the
// host key algorithms known_hosts has for addr (asked for first, as
// OpenSSH does: the server must show the key that is on file).
func hostKeyCallback(c SSHConfig, addr string) (ssh.HostKeyCallback, []string, error) {
	if c.InsecureHostKey {
		return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			if c.Log != nil {
				fmt.Fprintf(c.Log, "warning: --insecure-host-key: accepting %s host key %s unchecked\n", key.Type(), ssh.FingerprintSHA256(key))
			}
			return nil
		}, nil, nil
	}
	file := c.KnownHosts
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, nil, errs.BadInput("known_hosts", "give --known-hosts FILE", "no home directory: %v", err)
		}
		file = filepath.Join(home, ".ssh", "known_hosts")
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, nil, errs.BadInput(file, "create it with ssh-keyscan -p PORT HOST >> "+file+" (and compare the fingerprint), or give --known-hosts FILE", "cannot read known hosts: %v", err)
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			fp := ssh.FingerprintSHA256(key)
			if len(ke.Want) > 0 {
				return &hostKeyError{errs.BadInput(addr, fmt.Sprintf("if the machine was really reinstalled, remove the old key (ssh-keygen -R %q -f %s) and check the new fingerprint", knownHost(addr), file),
					"HOST KEY MISMATCH: the server offered %s %s, which %s:%d does not list for it: refused (someone may be impersonating it)", key.Type(), fp, ke.Want[0].Filename, ke.Want[0].Line)}
			}
			return &hostKeyError{errs.BadInput(addr, fmt.Sprintf("check the fingerprint, then add it: ssh-keyscan -p PORT HOST >> %s (or --known-hosts FILE, or --insecure-host-key)", file),
				"host key %s %s is not in %s: refused", key.Type(), fp, file)}
		}
		return err
	}, knownAlgorithms(cb, addr), nil
}

// knownAlgorithms lists the key types known_hosts holds for addr: a
// made-up key makes the callback name the keys it wanted.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil
	}
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		tcp = &net.TCPAddr{}
	}
	var ke *knownhosts.KeyError
	if !errors.As(cb(addr, tcp, signer.PublicKey()), &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, w := range ke.Want {
		types := []string{w.Key.Type()}
		if w.Key.Type() == ssh.KeyAlgoRSA {
			types = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, t := range types {
			if !seen[t] {
				seen[t] = true
				algos = append(algos, t)
			}
		}
	}
	return algos
}

// knownHost is the known_hosts spelling of addr ([host]:port unless 22).
func knownHost(addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	if p == "22" {
		return h
	}
	return "[" + h + "]:" + p
}

func authMethods(keyFile string) ([]ssh.AuthMethod, func(), error) {
	closeAgent := func() {}
	if keyFile != "" {
		data, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, closeAgent, errs.BadInput(keyFile, "give a private key file with --ssh-key", "%v", err)
		}
		signer, err := ssh.ParsePrivateKey(data)
		clear(data)
		if err != nil {
			return nil, closeAgent, errs.BadInput(keyFile, "give an unencrypted private key, or load it into ssh-agent and leave out --ssh-key", "%v", err)
		}
		return []ssh.AuthMethod{ssh.PublicKeys(signer)}, closeAgent, nil
	}
	var methods []ssh.AuthMethod
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			closeAgent = func() { conn.Close() }
			methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		var signers []ssh.Signer
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			data, err := os.ReadFile(filepath.Join(home, ".ssh", n))
			if err != nil {
				continue
			}
			if s, err := ssh.ParsePrivateKey(data); err == nil {
				signers = append(signers, s)
			}
			clear(data)
		}
		if len(signers) > 0 {
			methods = append(methods, ssh.PublicKeys(signers...))
		}
	}
	if len(methods) == 0 {
		return nil, closeAgent, errs.BadInput("--ssh-key", "give --ssh-key FILE or start ssh-agent with the key loaded", "no SSH key: no agent and no ~/.ssh/id_* key")
	}
	return methods, closeAgent, nil
}

type sshTarget struct{ c *ssh.Client }

func (t *sshTarget) LocalAddr() net.Addr { return t.c.LocalAddr() }
func (t *sshTarget) Close() error        { return t.c.Close() }

func (t *sshTarget) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	s, err := t.c.NewSession()
	if err != nil {
		return fmt.Errorf("ssh session: %w", err)
	}
	defer s.Close()
	// One lock for both streams, and no ReadFrom: x/crypto copies stdout
	// and stderr concurrently with io.Copy, and two concurrent
	// bytes.Buffer.ReadFrom calls on one buffer lose data (seen: a whole
	// command's output, one run in five).
	var mu sync.Mutex
	s.Stdin = stdin
	if stdout != nil {
		s.Stdout = lockedWriter{&mu, stdout}
	}
	if stderr != nil {
		s.Stderr = lockedWriter{&mu, stderr}
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Signal(ssh.SIGTERM)
		s.Close()
		return ctx.Err()
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Code: ee.ExitStatus()}
	}
	return err
}

// lockedWriter serialises writes and hides the writer's ReadFrom.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
