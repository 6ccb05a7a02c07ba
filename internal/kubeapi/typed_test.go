package kubeapi

import (
	"context"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// typedAPI is API on client-go's typed client, for the tests' fake
// clientset (the daemon uses restAPI).
type typedAPI struct{ c corev1client.CoreV1Interface }

func (a typedAPI) CreateEvent(ctx context.Context, ev *v1.Event) (*v1.Event, error) {
	return a.c.Events(ev.Namespace).CreateWithEventNamespaceWithContext(ctx, ev)
}

func (a typedAPI) PatchEvent(ctx context.Context, ev *v1.Event, patch []byte) (*v1.Event, error) {
	return a.c.Events(ev.Namespace).PatchWithEventNamespaceWithContext(ctx, ev, patch)
}

func (a typedAPI) GetPersistentVolume(ctx context.Context, name string) (*v1.PersistentVolume, error) {
	return a.c.PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
}

func (a typedAPI) GetNode(ctx context.Context, name string) (*v1.Node, error) {
	return a.c.Nodes().Get(ctx, name, metav1.GetOptions{})
}

func (a typedAPI) PatchNode(ctx context.Context, name string, patch []byte) error {
	_, err := a.c.Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "mountwatchd"})
	return err
}

func (a typedAPI) PatchNodeStatus(ctx context.Context, name string, patch []byte) error {
	_, err := a.c.Nodes().PatchStatus(ctx, name, patch)
	return err
}
