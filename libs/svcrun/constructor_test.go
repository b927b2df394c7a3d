package svcrun

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/httpx"
)

type fakeService struct{ name string }

func (f *fakeService) Handler() http.Handler          { return http.NotFoundHandler() }
func (f *fakeService) Run(context.Context) error      { return nil }
func (f *fakeService) Checks() map[string]httpx.Check { return nil }

func TestConstructor(t *testing.T) {
	t.Parallel()
	parse := func(env *config.Env) string { return env.String("NAME", "default") }
	build := func(_ context.Context, name string, _ *Deps) (*fakeService, error) {
		if name == "broken" {
			return nil, errors.New("cannot build")
		}
		return &fakeService{name: name}, nil
	}
	configure := Constructor(parse, build)

	svc, err := configure(config.New(func(string) string { return "" }))(context.Background(), &Deps{})
	if f, ok := svc.(*fakeService); err != nil || !ok || f.name != "default" {
		t.Errorf("Got(service) = %#v, %v; want the one built from the parsed config", svc, err)
	}
	svc, err = configure(config.New(func(string) string { return "broken" }))(context.Background(), &Deps{})
	if err == nil || svc != nil {
		t.Errorf("Got(service) = %#v, %v; want a nil interface and the error", svc, err)
	}
}
