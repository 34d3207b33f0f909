package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"gopkg.in/yaml.v3"
)

// The subset of the Kubernetes API our manifests use. Decoding is strict
// (unknown fields are errors), so a misspelt field in a manifest fails the
// test instead of being ignored as kubectl apply would warn about; a field
// added to a manifest must be added here too.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type typeMeta struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type configMap struct {
	typeMeta `yaml:",inline"`
	Data     map[string]string `yaml:"data"`
}

type secret struct {
	typeMeta   `yaml:",inline"`
	Type       string            `yaml:"type"`
	StringData map[string]string `yaml:"stringData"`
	Data       map[string]string `yaml:"data"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type deployment struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		Replicas int           `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Strategy *struct {
			Type          string `yaml:"type"`
			RollingUpdate *struct {
				MaxUnavailable intOrString `yaml:"maxUnavailable"`
				MaxSurge       intOrString `yaml:"maxSurge"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	TopologySpreadConstraints     []struct {
		MaxSkew           int           `yaml:"maxSkew"`
		TopologyKey       string        `yaml:"topologyKey"`
		WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
		LabelSelector     labelSelector `yaml:"labelSelector"`
	} `yaml:"topologySpreadConstraints"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []volume    `yaml:"volumes"`
}

type container struct {
	Name            string           `yaml:"name"`
	Image           string           `yaml:"image"`
	RestartPolicy   string           `yaml:"restartPolicy"`
	Command         []string         `yaml:"command"`
	Args            []string         `yaml:"args"`
	Env             []envVar         `yaml:"env"`
	Ports           []containerPort  `yaml:"ports"`
	StartupProbe    *probe           `yaml:"startupProbe"`
	ReadinessProbe  *probe           `yaml:"readinessProbe"`
	LivenessProbe   *probe           `yaml:"livenessProbe"`
	Lifecycle       *lifecycle       `yaml:"lifecycle"`
	Resources       resources        `yaml:"resources"`
	SecurityContext *securityContext `yaml:"securityContext"`
	VolumeMounts    []volumeMount    `yaml:"volumeMounts"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef     *keyRef `yaml:"secretKeyRef"`
		ConfigMapKeyRef  *keyRef `yaml:"configMapKeyRef"`
		ResourceFieldRef *struct {
			Resource string `yaml:"resource"`
		} `yaml:"resourceFieldRef"`
	} `yaml:"valueFrom"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional *bool  `yaml:"optional"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type lifecycle struct {
	PreStop *struct {
		Sleep *struct {
			Seconds int `yaml:"seconds"`
		} `yaml:"sleep"`
		Exec *struct {
			Command []string `yaml:"command"`
		} `yaml:"exec"`
	} `yaml:"preStop"`
}

type resources struct {
	Requests map[string]string `yaml:"requests"`
	Limits   map[string]string `yaml:"limits"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	RunAsGroup               *int64 `yaml:"runAsGroup"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
	SeccompProfile *struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type volume struct {
	Name     string `yaml:"name"`
	EmptyDir *struct {
		Medium    string `yaml:"medium"`
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
}

type service struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		Type                     string            `yaml:"type"`
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
			Protocol   string      `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type podDisruptionBudget struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		MinAvailable   *intOrString  `yaml:"minAvailable"`
		MaxUnavailable *intOrString  `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

// intOrString is Kubernetes' IntOrString: a port number or a port name,
// a count or a percentage.
type intOrString struct {
	Int   int
	Str   string
	IsStr bool
}

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number or a string", n.Line)
	}
	if n.Tag == "!!int" {
		i, err := strconv.Atoi(n.Value)
		v.Int = i
		return err
	}
	v.Str, v.IsStr = n.Value, true
	return nil
}

func (v intOrString) String() string {
	if v.IsStr {
		return v.Str
	}
	return strconv.Itoa(v.Int)
}

// manifestObjects is what one manifest file declares, by kind.
type manifestObjects struct {
	ConfigMaps  []*configMap
	Secrets     []*secret
	Deployments []*deployment
	Services    []*service
	PDBs        []*podDisruptionBudget
}

// decodeManifests reads every document of a multi-document YAML file
// strictly into its kind's type.
func decodeManifests(file string) (*manifestObjects, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	objs := &manifestObjects{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
			continue // an empty document (a comment before ---)
		}
		var tm typeMeta
		if err := doc.Decode(&tm); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, doc.Line, err)
		}
		var target any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ConfigMap":
			o := &configMap{}
			objs.ConfigMaps, target = append(objs.ConfigMaps, o), o
		case "v1 Secret":
			o := &secret{}
			objs.Secrets, target = append(objs.Secrets, o), o
		case "apps/v1 Deployment":
			o := &deployment{}
			objs.Deployments, target = append(objs.Deployments, o), o
		case "v1 Service":
			o := &service{}
			objs.Services, target = append(objs.Services, o), o
		case "policy/v1 PodDisruptionBudget":
			o := &podDisruptionBudget{}
			objs.PDBs, target = append(objs.PDBs, o), o
		default:
			return nil, fmt.Errorf("%s:%d: %s %s: not a kind this test knows", file, doc.Line, tm.APIVersion, tm.Kind)
		}
		// Strict decoding works on a Decoder, not on a Node: re-encode.
		raw, err := yaml.Marshal(&doc)
		if err != nil {
			return nil, err
		}
		strict := yaml.NewDecoder(bytes.NewReader(raw))
		strict.KnownFields(true)
		if err := strict.Decode(target); err != nil {
			return nil, fmt.Errorf("%s: %s %s (document at line %d): %w", file, tm.Kind, tm.Metadata.Name, doc.Line, err)
		}
	}
	return objs, nil
}

// secretKey reports whether the file's Secret name has key.
func (o *manifestObjects) secretKey(name, key string) bool {
	for _, s := range o.Secrets {
		if s.Metadata.Name == name {
			_, a := s.StringData[key]
			_, b := s.Data[key]
			return a || b
		}
	}
	return false
}

func (o *manifestObjects) configMap(name string) *configMap {
	for _, c := range o.ConfigMaps {
		if c.Metadata.Name == name {
			return c
		}
	}
	return nil
}
